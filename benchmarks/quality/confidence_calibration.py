"""The learned confidence of a model: signals, their AUROC, the fitted calibration and its reliability.

Every dev photo (Flickr8k dev, COCO val2014 dev, coco_mini) is captioned as `sat-tf caption` does;
a caption is good when its CIDEr-D is above its dev set's median. For each caption the signals of
`sat_tf_edge.calibration.SIGNALS` are measured (the photo's novelty against h0 of training photos:
1,000 Flickr8k train photos and the 750 COCO val2014 train photos), plus signals reported but not
shippable everywhere (the ImageNet tagger's top probability and entropy, whether a confident tag
naming a COCO object goes unnamed, a kNN distance that would need the training photos on the
device, the caption's log-probability without the photo, the mean entropy of the next-word
distributions, and the consensus of the caption with 8 sampled captions). The calibration is
fitted by `sat_tf.evaluation.calibration.fit_calibration` (forward selection on 5-fold
cross-validated AUROC); every figure of the combined confidence is out of fold.
Writes the AUROC table per signal and combined, the "not sure" rates before and after, the
reliability plot (raw against calibrated, per dev set), and the calibration itself (`--save`).

    python -m benchmarks.quality.confidence_calibration --model everyday_selftrained_lite0_448 \
        --output benchmarks/results/confidence_calibration --plot docs/images/reliability.png \
        --save runs/benchmarks/everyday_calibration.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import DATA, coco_data, coco_dev, command_line, flickr_dev, machine, write_report  # noqa: E402  # noqa: E402
from benchmarks.quality.confidence import contradicted  # noqa: E402
from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.data.sources import DataConfig, load_captions  # noqa: E402
from sat_tf.evaluation.calibration import caption_words, fit_calibration, fit_photo_novelty, good_captions  # noqa: E402
from sat_tf.evaluation.cider import CiderD  # noqa: E402
from sat_tf.evaluation.ranking import auroc  # noqa: E402
from sat_tf.inference import RandomSampler, generate_captions  # noqa: E402
from sat_tf.inference.generate import region_features  # noqa: E402
from sat_tf.workflows.calibration import caption_dev_set, photo_states_of_files  # noqa: E402
from sat_tf.workflows.calibration_store import save_calibration  # noqa: E402
from sat_tf.workflows.caption import load_for_captioning  # noqa: E402
from sat_tf_edge.calibration import SIGNALS, PhotoNovelty  # noqa: E402

DEV_SETS = {"Flickr8k dev": flickr_dev, "COCO val2014 dev": coco_dev, "coco_mini": coco_data}
REPORTED_ONLY = (
    "tag_top_probability",  # every runtime has the tagger's probabilities, but not as a calibration input
    "tag_entropy",
    "tag_contradicts",
    "photo_knn_distance",  # needs every training photo's h0 on the device
    "language_only_log_prob",  # mean log p(caption | no photo): a second teacher-forced pass
    "token_entropy",  # mean entropy of the next-word distribution along the caption
    "sample_consensus",  # CIDEr-D of the caption against 8 sampled captions: random draws differ per runtime
)
SAMPLES = 8


def training_photos(flickr_sample: int, seed: int = 0) -> list[str]:
    """Paths of the training photos the novelty is measured against."""
    flickr = DATA / "flickr8k"
    names = (flickr / "Flickr_8k.trainImages.txt").read_text().split()
    rng = np.random.default_rng(seed)
    paths = [str(flickr / "images" / n) for n in rng.choice(names, flickr_sample, replace=False)]
    coco = DATA / "coco_val2014"
    return paths + [str(coco / "images" / n) for n in (coco / "train_images.txt").read_text().split()]


def knn_distance(states: np.ndarray, training: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean cosine distance to the k nearest training photos' h0."""
    unit = states / np.linalg.norm(states, axis=1, keepdims=True)
    train = training / np.linalg.norm(training, axis=1, keepdims=True)
    distance = 1.0 - unit @ train.T
    return np.sort(distance, axis=1)[:, :k].mean(axis=1)


def teacher_forced(model, features, tokens: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and least log-probability of each caption's tokens and mean entropy of the next-word
    distributions along it, the decoder reading `features`."""
    inputs = np.concatenate([np.full((len(tokens), 1), model.tokenizer.start_id), tokens[:, :-1]], 1)
    logits = model.decoder.teacher_forcing(features, tf.constant(inputs, tf.int32))["logits"]
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32)).numpy()
    emitted = np.arange(tokens.shape[1]) < lengths[:, None]
    chosen = np.take_along_axis(log_probs, tokens[..., None], axis=2)[..., 0]
    entropy = -(np.exp(log_probs) * log_probs).sum(-1)
    return {
        "log_prob": (chosen * emitted).sum(1) / lengths,
        "min_log_prob": np.where(emitted, chosen, np.inf).min(1),
        "entropy": (entropy * emitted).sum(1) / lengths,
    }


def sample_consensus(captions: list[str], samples: list[list[str]]) -> np.ndarray:
    """CIDEr-D of each caption against its photo's sampled captions, the document frequencies taken
    over every photo's samples (one photo's alone would make every n-gram common)."""
    references = [[caption_words(text) for text in row] for row in samples]
    return CiderD(references).scores([caption_words(text) for text in captions], references)


def study_signals(model, paths: list[str], best) -> dict[str, np.ndarray]:
    """The reported-only signals that need the photos again: the language-only log-probability,
    the token entropy and the sample consensus."""
    size = model.encoder.image_size
    rows: dict[str, list] = {"language_only_log_prob": [], "token_entropy": [], "samples": []}
    for start in range(0, len(paths), 64):
        window = slice(start, start + 64)
        images = np.stack([load_image(p, size) for p in paths[window]])
        features = region_features(model, images=images)
        tokens, lengths = best.tokens[window], np.maximum(best.lengths[window], 1)
        no_photo = model.decoder.without_photos(features, tf.zeros([len(images)], tf.bool))
        rows["language_only_log_prob"] += teacher_forced(model, no_photo, tokens, lengths)["log_prob"].tolist()
        rows["token_entropy"] += teacher_forced(model, features, tokens, lengths)["entropy"].tolist()
        sampled = generate_captions(model, images=images, sampler=RandomSampler(SAMPLES), forbid_unknown=True)
        rows["samples"] += sampled.texts
    consensus = sample_consensus(best.texts, rows.pop("samples"))
    return {name: np.array(values) for name, values in rows.items()} | {"sample_consensus": consensus}


def measure_set(loaded, data: DataConfig, training_states: np.ndarray, novelty) -> dict[str, np.ndarray]:
    """The shippable signals of each caption, the reported-only ones, and its CIDEr-D."""
    captioned = caption_dev_set(loaded, data)
    candidates, tags = captioned.candidates, captioned.tags
    table = candidates.confidence_signals(novelty, loaded.model.tokenizer.end_id)
    table["raw_confidence"] = candidates.best().confidence
    table["photo_knn_distance"] = knn_distance(candidates.photo_states, training_states)
    table["tag_top_probability"] = np.array([t[0].probability if t else 0.0 for t in tags])
    table["tag_entropy"] = np.array([-sum(x.probability * np.log(x.probability) for x in t) for t in tags])
    table["tag_contradicts"] = np.array([float(contradicted(c, t)) for c, t in zip(candidates.best_texts, tags)])
    paths = load_captions(data, loaded.model.encoder.image_size, verbose=False).image_paths
    table.update(study_signals(loaded.model, paths, candidates.best()))
    table["cider"] = captioned.cider
    return table


def collect(loaded, flickr_sample: int) -> tuple[dict[str, np.ndarray], object]:
    training_states = photo_states_of_files(loaded.model, training_photos(flickr_sample))
    novelty = fit_photo_novelty(training_states)
    parts = {name: measure_set(loaded, data(), training_states, novelty) for name, data in DEV_SETS.items()}
    table = {key: np.concatenate([p[key] for p in parts.values()]) for key in next(iter(parts.values()))}
    table["group"] = np.concatenate([[name] * len(p["cider"]) for name, p in parts.items()])
    return table, novelty


def reliability_bins(confidence: np.ndarray, good: np.ndarray, bins: int) -> list[dict]:
    """Bins of (nearly) equal count by confidence: each one's mean confidence and share of good captions."""
    order = np.argsort(confidence, kind="stable")
    return [
        {
            "captions": len(rows),
            "mean_confidence": float(confidence[rows].mean()),
            "share_good": float(good[rows].mean()),
        }
        for rows in np.array_split(order, bins)
        if len(rows)
    ]


def plot(curves: dict, threshold: float, path: str) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for axis, (kind, rows) in zip(axes, curves.items()):
        for name, row in rows.items():
            x = [b["mean_confidence"] for b in row["bins"]]
            y = [b["share_good"] for b in row["bins"]]
            axis.plot(x, y, marker="o", label=f"{name} (AUROC {row['auroc']:.2f})")
        if kind.startswith("calibrated"):
            axis.axvline(threshold, color="grey", linestyle="--", label=f'"not sure" below {threshold:.2f}')
            axis.plot([0, 1], [0, 1], color="lightgrey", linewidth=0.8)
        axis.axhline(0.5, color="lightgrey", linewidth=0.8)
        axis.set(xlabel=f"{kind} (bin mean)", title=kind)
        axis.legend(loc="upper left", fontsize=8)
    axes[0].set(ylabel="share of captions above their set's median CIDEr-D", ylim=(0, 1))
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", nargs="+", default=["everyday_selftrained_lite0_448"], help="preset, run folder or .keras"
    )
    parser.add_argument("--flickr-train-photos", type=int, default=1000, help="Flickr8k train photos for the novelty")
    parser.add_argument("--signals", default="runs/benchmarks/calibration_signals.npz", help="cache of the signals")
    parser.add_argument("--refresh", action="store_true", help="measure the signals again")
    parser.add_argument("--bins", type=int, default=5, help="reliability bins of equal count per dev set")
    parser.add_argument("--plot", default="runs/benchmarks/reliability.png", help="where to draw the plot")
    parser.add_argument(
        "--save", help="write the fitted calibration here: a JSON file, or a preset or run folder (beside its model)"
    )
    add_output_argument(parser, "confidence_calibration")
    args = parser.parse_args()
    loaded = load_for_captioning(args.model, as_caption_command=True)
    cache = Path(args.signals)
    if args.refresh or not cache.is_file():
        table, novelty = collect(loaded, args.flickr_train_photos)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, novelty=json.dumps(novelty.to_json()), **table)
    stored = np.load(cache)
    table = {key: stored[key] for key in stored.files if key != "novelty"}
    novelty = PhotoNovelty(**json.loads(str(stored["novelty"])))
    groups = table["group"]
    good = good_captions(table["cider"], groups)
    fitted = fit_calibration(table, good, groups, novelty, candidates=SIGNALS)
    everything = fit_calibration(table, good, groups, novelty, candidates=SIGNALS + REPORTED_ONLY)
    raw = table["raw_confidence"]
    raw_threshold = loaded.decoding.not_sure_below
    sets = list(DEV_SETS)
    raw_rates = {
        s: {
            "not_sure_on_good": float((raw[groups == s] < raw_threshold)[good[groups == s]].mean()),
            "not_sure_on_rest": float((raw[groups == s] < raw_threshold)[~good[groups == s]].mean()),
        }
        for s in sets
    }
    curves = {
        "raw confidence": {
            s: {
                "auroc": auroc(raw[groups == s], good[groups == s]),
                "bins": reliability_bins(raw[groups == s], good[groups == s], args.bins),
            }
            for s in sets
        },
        "calibrated confidence (out of fold)": {
            s: {
                "auroc": fitted.out_of_fold_auroc[s],
                "bins": reliability_bins(fitted.out_of_fold[groups == s], good[groups == s], args.bins),
            }
            for s in sets
        },
    }
    plot(curves, fitted.calibration.not_sure_below, args.plot)
    if args.save and Path(args.save).is_dir():  # a preset or run folder: kept beside the model
        save_calibration(args.save, fitted.calibration)
    elif args.save:
        Path(args.save).write_text(json.dumps(fitted.calibration.to_json(), indent=1))
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "model": args.model,
        "decoding": dataclasses.asdict(loaded.decoding),
        "photos": {s: int(np.sum(groups == s)) for s in sets},
        "signal_auroc": fitted.signal_auroc | {k: v for k, v in everything.signal_auroc.items() if k in REPORTED_ONLY},
        "raw": {
            "threshold": raw_threshold,
            "auroc": {s: curves["raw confidence"][s]["auroc"] for s in sets},
            "rates": raw_rates,
        },
        "shipped": {
            "selection": fitted.selection,
            "out_of_fold_auroc": fitted.out_of_fold_auroc,
            "threshold": fitted.calibration.not_sure_below,
            "promise": fitted.calibration.promise,
            "rates": fitted.flag_rates,
        },
        "with_unshippable_signals": {
            "selection": everything.selection,
            "out_of_fold_auroc": everything.out_of_fold_auroc,
            "rates": everything.flag_rates,
        },
        "reliability": curves,
        "calibration": fitted.calibration.to_json() | {"novelty": "(in --save)"},
    }
    write_report(args.output, report, markdown(report, sets))


def markdown(report: dict, sets: list[str]) -> str:
    head = "| signal | " + " | ".join(f"AUROC {s}" for s in sets) + " |"
    lines = [head, "|---" * (len(sets) + 1) + "|"]
    for name, values in report["signal_auroc"].items():
        shipped = "" if name not in REPORTED_ONLY else " (not shippable everywhere)"
        lines.append(f"| {name}{shipped} | " + " | ".join(f"{values[s]:.3f}" for s in sets) + " |")
    lines.append("")
    lines.append(
        "| confidence | " + " | ".join(f"{s}: AUROC / not sure on better half / on worse half" for s in sets) + " |"
    )
    lines.append("|---" * (len(sets) + 1) + "|")
    rows = [
        (
            "raw (geometric-mean token probability), threshold %.2f" % report["raw"]["threshold"],
            report["raw"]["auroc"],
            report["raw"]["rates"],
        ),
        (
            "calibrated: "
            + " + ".join(step["signal"] for step in report["shipped"]["selection"])
            + ", threshold %.3f" % report["shipped"]["threshold"],
            report["shipped"]["out_of_fold_auroc"],
            report["shipped"]["rates"],
        ),
        (
            "with the unshippable signals too: "
            + " + ".join(s["signal"] for s in report["with_unshippable_signals"]["selection"]),
            report["with_unshippable_signals"]["out_of_fold_auroc"],
            report["with_unshippable_signals"]["rates"],
        ),
    ]
    for name, aurocs, rates in rows:
        cells = [
            f"{aurocs[s]:.3f} / {100 * rates[s]['not_sure_on_good']:.0f}% / {100 * rates[s]['not_sure_on_rest']:.0f}%"
            for s in sets
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Promise of the threshold: {report['shipped']['promise']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
