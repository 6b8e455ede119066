"""How well a confidence tells right from wrong captions as a person judges them.

Reads the judged pairs (`benchmarks/labels/caption_judgments.json`: dev photos with the default
preset's captions, its beam's second caption and the previous default's, each judged right,
partly right or wrong by eye, blind to any signal; `benchmarks.quality.caption_judgments`) and
measures, for each pair, signals of the caption against its photo under the model (default: the
default preset):

- `token_log_prob`, `min_token_log_prob`: the mean and the least log-probability of the caption's
  tokens, the decoder reading the photo (teacher forced, `<end>` included);
- `photo_gain`: the mean log-probability with the photo minus without it (the decoder's "no
  photo" annotation): how much the photo, rather than the language alone, speaks for the caption;
- `sample_consensus`: CIDEr-D of the caption against 8 captions sampled from the model;
- `tag_agrees`: 0 when a confident ImageNet tag names a COCO object the caption does not name;
- `tag_top_probability`: the probability of the photo's top ImageNet tag (how sure the tagger is of
  what the photo shows; every runtime has the tagger, but not as a calibration input);
- for the preset's own captions: its shipped (calibrated) confidence and "not sure" flag, and the
  calibration refitted on these labels (`fit_calibration`, 5-fold, out of fold): with the signals
  every runtime has (`sat_tf_edge.calibration.SIGNALS`), and with the study's signals too.

Reports AUROC for right vs not right (partly right or wrong) on every pair and on the preset's own
captions, per dev set and over both COCO dev sets, and the share of right and of wrong captions
the shipped threshold marks "not sure".

    python -m benchmarks.quality.confidence_by_eye --output benchmarks/results/confidence_by_eye
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections import defaultdict
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import DATA, command_line, machine, write_report  # noqa: E402
from benchmarks.quality.caption_judgments import load_judgments  # noqa: E402
from benchmarks.quality.confidence import contradicted  # noqa: E402
from benchmarks.quality.confidence_calibration import sample_consensus, teacher_forced  # noqa: E402
from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.evaluation.calibration import fit_calibration  # noqa: E402
from sat_tf.evaluation.ranking import auroc  # noqa: E402
from sat_tf.inference import RandomSampler, generate_captions  # noqa: E402
from sat_tf.inference.generate import region_features  # noqa: E402
from sat_tf.workflows.caption import caption_files, load_for_captioning  # noqa: E402
from sat_tf_edge.calibration import SIGNALS as RUNTIME_SIGNALS  # noqa: E402

SAMPLES = 8
SIGNALS = (
    "token_log_prob",
    "min_token_log_prob",
    "photo_gain",
    "sample_consensus",
    "tag_agrees",
    "tag_top_probability",
)
GROUPS = {
    "COCO dev (val2014 dev + coco_mini)": ("coco_val2014_dev", "coco_mini"),
    "COCO val2014 dev": ("coco_val2014_dev",),
    "coco_mini": ("coco_mini",),
    "Flickr8k dev": ("flickr8k_dev",),
}


def photo_signals(loaded, photo: str, captions: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The teacher-forced signals of each caption of one photo, and captions sampled from the model."""
    model = loaded.model
    images = load_image(str(DATA / photo), model.encoder.image_size)[None]
    features = tf.repeat(region_features(model, images=images), len(captions), axis=0)
    ids = model.tokenizer.tokenize(tf.constant(captions)).to_tensor().numpy()[:, 1:]  # after <start>
    lengths = (ids != model.tokenizer.pad_id).sum(1)  # <end> included
    with_photo = teacher_forced(model, features, ids, lengths)
    no_photo = model.decoder.without_photos(features, tf.zeros([len(captions)], tf.bool))
    without_photo = teacher_forced(model, no_photo, ids, lengths)
    samples = generate_captions(model, images=images, sampler=RandomSampler(SAMPLES), forbid_unknown=True).texts[0]
    signals = {
        "token_log_prob": with_photo["log_prob"],
        "min_token_log_prob": with_photo["min_log_prob"],
        "photo_gain": with_photo["log_prob"] - without_photo["log_prob"],
    }
    return signals, samples


def measure(loaded, pairs: list[dict]) -> tuple[dict[str, np.ndarray], float]:
    """Every signal of every pair, the shipped confidence where the caption is the preset's own, and
    the shipped "not sure" threshold."""
    by_photo: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_photo[pair["image"]].append(index)
    photos = list(by_photo)
    shipped = caption_files(
        loaded.model,
        [str(DATA / p) for p in photos],
        loaded.decoding,
        with_tags=True,
        calibration=loaded.calibration,
    )
    best = shipped.candidates.best().texts
    table = {name: np.full(len(pairs), np.nan) for name in (*SIGNALS, *RUNTIME_SIGNALS, "shipped_confidence")}
    assert shipped.candidates is not None and loaded.calibration is not None  # a calibrated preset
    runtime = shipped.candidates.confidence_signals(loaded.calibration.novelty, loaded.model.tokenizer.end_id)
    samples_of_pair: list[list[str]] = [[] for _ in pairs]
    for number, photo in enumerate(photos):
        rows = by_photo[photo]
        captions = [pairs[i]["caption"] for i in rows]
        signals, samples = photo_signals(loaded, photo, captions)
        for name, values in signals.items():
            table[name][rows] = values
        for i in rows:
            samples_of_pair[i] = samples
        tags = shipped.tags[number] if shipped.tags else []
        table["tag_agrees"][rows] = [0.0 if contradicted(c, tags) else 1.0 for c in captions]
        table["tag_top_probability"][rows] = tags[0].probability if tags else 0.0
        for i, caption in zip(rows, captions):
            if caption == best[number]:  # the preset's own caption, as `sat-tf caption` gives it
                table["shipped_confidence"][i] = shipped.confidence[number]
                for name in RUNTIME_SIGNALS:
                    table[name][i] = runtime[name][number]
        print(f"{number + 1}/{len(photos)} photos", end="\r", flush=True)
    table["sample_consensus"] = sample_consensus([p["caption"] for p in pairs], samples_of_pair)
    return table, shipped.not_sure_below


def summarize(table: dict, pairs: list[dict], threshold: float) -> dict:
    dev_sets = np.array([p["dev_set"] for p in pairs])
    labels = np.array([p["label"] for p in pairs])
    right = labels == "right"
    own = ~np.isnan(table["shipped_confidence"])
    report: dict = {"pairs": {}, "all_pairs": {}, "own_captions": {}, "not_sure_rates": {}, "tradeoff": {}}
    for group, members in GROUPS.items():
        chosen = np.isin(dev_sets, members)
        report["pairs"][group] = {
            "all": int(chosen.sum()),
            "own": int((chosen & own).sum()),
            **{label: int((chosen & (labels == label)).sum()) for label in ("right", "partly right", "wrong")},
        }
        report["all_pairs"][group] = {s: auroc(table[s][chosen], right[chosen]) for s in SIGNALS}
        mine = chosen & own
        report["own_captions"][group] = {
            s: auroc(table[s][mine], right[mine]) for s in (*SIGNALS, "shipped_confidence")
        }
        flagged = table["shipped_confidence"][mine] < threshold
        report["not_sure_rates"][group] = {
            label: float(flagged[labels[mine] == label].mean()) if (labels[mine] == label).any() else None
            for label in ("right", "partly right", "wrong")
        }
        report["tradeoff"][group] = tradeoff(table["shipped_confidence"][mine], labels[mine])
    return report


RIGHT_FLAGGED = (0.10, 0.25, 0.50)


def tradeoff(confidence: np.ndarray, labels: np.ndarray) -> list[dict]:
    """For thresholds that mark a given share of the right captions "not sure" (`RIGHT_FLAGGED`),
    the share of the wrong ones they mark: what any threshold on this confidence can promise."""
    right, wrong = confidence[labels == "right"], confidence[labels == "wrong"]
    if not len(right) or not len(wrong):
        return []
    rows = []
    for share in RIGHT_FLAGGED:
        threshold = float(np.quantile(right, share))
        rows.append(
            {"right_flagged": share, "threshold": threshold, "wrong_flagged": float((wrong < threshold).mean())}
        )
    return rows


def refit(table: dict, pairs: list[dict], novelty) -> tuple[dict, dict]:
    """The calibration fitted on the by-eye labels of the preset's own captions, out of fold: with
    the signals every runtime has, and with the study's signals as candidates too. Returns the
    report and the fits (`FittedCalibration`) by name."""
    own = ~np.isnan(table["shipped_confidence"])
    right = np.array([p["label"] == "right" for p in pairs])[own]
    groups = np.array([p["dev_set"] for p in pairs])[own]
    mine = {name: values[own] for name, values in table.items()}
    report, fits = {}, {}
    for name, candidates in (
        ("runtime signals", RUNTIME_SIGNALS),
        ("with the study's signals", (*RUNTIME_SIGNALS, *SIGNALS)),
    ):
        fitted = fits[name] = fit_calibration(mine, right, groups, novelty, candidates=candidates)
        confident = fitted.out_of_fold >= np.median(fitted.out_of_fold)
        report[name] = {
            "selection": [step["signal"] for step in fitted.selection],
            "out_of_fold_auroc": fitted.out_of_fold_auroc,
            # a person's view: how many captions are right overall and among the more confident half
            "right_overall": float(right.mean()),
            "right_in_the_more_confident_half": float(right[confident].mean()),
        }
    return report, fits


def markdown(report: dict) -> str:
    groups = list(GROUPS)
    lines = [
        "Right vs not right by eye (AUROC); all pairs: the preset's captions, its beam's second, the previous "
        "default's; own: the preset's own captions.",
        "",
        "| signal | " + " | ".join(f"{g}: all / own" for g in groups) + " |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for signal in (*SIGNALS, "shipped_confidence"):
        cells = []
        for g in groups:
            every = report["all_pairs"][g].get(signal)
            cells.append(f"{'-' if every is None else f'{every:.3f}'} / {report['own_captions'][g][signal]:.3f}")
        lines.append(f"| {signal} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"'Not sure' (shipped confidence below {report['threshold']:.3f}) on the preset's own captions:",
        "",
        "| dev set | pairs (right / partly / wrong) | not sure on right | on partly right | on wrong |",
        "|---|---|---|---|---|",
    ]
    for g in groups:
        n, rates = report["pairs"][g], report["not_sure_rates"][g]
        lines.append(
            f"| {g} | {n['all']} ({n['right']} / {n['partly right']} / {n['wrong']}), own {n['own']} | "
            + " | ".join(
                "-" if rates[k] is None else f"{100 * rates[k]:.0f}%" for k in ("right", "partly right", "wrong")
            )
            + " |"
        )
    lines += ["", "Any threshold on the shipped confidence (own captions): not sure on right -> on wrong:", ""]
    for g in groups:
        rows = report["tradeoff"][g]
        if rows:
            pairs = ", ".join(f"{100 * r['right_flagged']:.0f}% -> {100 * r['wrong_flagged']:.0f}%" for r in rows)
            lines.append(f"- {g}: {pairs}")
    lines += ["", "Refitted on the by-eye labels of the preset's own captions (5-fold, out of fold):", ""]
    for name, fit in report["refit"].items():
        aurocs = ", ".join(f"{group} {value:.3f}" for group, value in fit["out_of_fold_auroc"].items())
        lines.append(
            f"- {name}: {' + '.join(fit['selection'])}; AUROC {aurocs}; right: {100 * fit['right_overall']:.0f}% "
            f"of all, {100 * fit['right_in_the_more_confident_half']:.0f}% of the more confident half"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="everyday_selftrained_lite0_448", help="preset, run folder or .keras")
    parser.add_argument(
        "--preset-dir",
        type=Path,
        help="write the calibration refitted on the by-eye labels (the runtime signals) into this preset: its "
        "confidence then estimates the chance a person calls the caption right (benchmarks.quality."
        "not_sure_threshold --confidence refit then sets its threshold)",
    )
    add_output_argument(parser, "confidence_by_eye")
    args = parser.parse_args()
    pairs = load_judgments()
    loaded = load_for_captioning([args.model], as_caption_command=True)
    table, threshold = measure(loaded, pairs)
    refits, fits = refit(table, pairs, loaded.calibration.novelty if loaded.calibration else None)
    runtime_fit = fits["runtime signals"]
    own = ~np.isnan(table["shipped_confidence"])
    table["refit_confidence"] = np.full(len(pairs), np.nan)
    table["refit_confidence"][own] = runtime_fit.out_of_fold  # each caption's, from a fit without its fold
    if args.preset_dir:
        from sat_tf.workflows.calibration_store import save_calibration

        assert runtime_fit.calibration is not None and loaded.calibration is not None  # runtime signals only
        kept = {"not_sure_below": loaded.calibration.not_sure_below, "promise": ""}
        save_calibration(args.preset_dir, dataclasses.replace(runtime_fit.calibration, **kept))
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "model": args.model,
        "threshold": threshold,
        **summarize(table, pairs, threshold),
        "refit": refits,
        # every pair's signals, by its id in benchmarks/labels/caption_judgments.json (NaN: not measured)
        "signals_by_pair": {
            str(pair["id"]): {
                name: None if np.isnan(values[i]) else round(float(values[i]), 5) for name, values in table.items()
            }
            for i, pair in enumerate(pairs)
        },
    }
    write_report(args.output, report, markdown(report))


if __name__ == "__main__":
    main()
