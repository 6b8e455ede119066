"""The "not sure" threshold in a person's terms: the confidence below which a chosen share of the
captions judged right by eye is marked, how many of the wrong ones that marks, and how many of the
captions shown without "not sure" people judged right.

With `--to-eye`, the preset's calibration is first rescaled so that its confidence reads as "the
chance a person calls this caption right": a logistic fit of the by-eye label on the shipped
confidence's logit (Platt scaling, on the preset's own judged captions of every dev set) folded
into the calibration's weights and bias, so every runtime computes it unchanged and the ranking
(and which captions are "not sure") stays the same. The reliability plot (`--plot`) bins the
rescaled confidence against the share judged right, each half's confidence rescaled by a fit on
the other half.

Reads the judged pairs (`benchmarks/labels/caption_judgments.json`) and the shipped confidence of
the preset's own captions that `benchmarks.quality.confidence_by_eye` recorded
(`benchmarks/results/confidence_by_eye.json`, `signals_by_pair`), on the COCO dev photos (val2014
dev and coco_mini). The threshold is the `--right-flagged` quantile of the right captions'
confidence; the rates it gives are reported in sample and held out (200 random halvings: the
threshold chosen on one half, the rates measured on the other). With `--preset-dir`, the threshold
and its promise are written into that preset's calibration (`save_calibration`; the weights and the
confidence itself are unchanged).

    python -m benchmarks.quality.not_sure_threshold --right-flagged 0.25 --to-eye \
        --preset-dir sat_tf/presets/everyday_selftrained_lite0_448 --plot docs/images/reliability_by_eye.png \
        --output benchmarks/results/not_sure_threshold
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks.common import add_output_argument, command_line, machine, write_report
from benchmarks.quality.caption_judgments import load_judgments

RESULTS = Path(__file__).resolve().parents[1] / "results" / "confidence_by_eye.json"
COCO_DEV = ("coco_val2014_dev", "coco_mini")
LABELS = ("right", "partly right", "wrong")


def shipped_confidences(
    results: Path = RESULTS, name: str = "shipped_confidence"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """dev set group -> (confidence, label) of the preset's own judged captions: the shipped
    confidence, or (`refit_confidence`) the by-eye refit's out-of-fold one."""
    signals = json.loads(results.read_text())["signals_by_pair"]
    rows = [(p, signals[str(p["id"])].get(name)) for p in load_judgments()]
    rows = [(p, c) for p, c in rows if c is not None]
    groups = {"COCO dev": COCO_DEV, "Flickr8k dev": ("flickr8k_dev",)}
    return {
        name: (
            np.array([c for p, c in rows if p["dev_set"] in members]),
            np.array([p["label"] for p, c in rows if p["dev_set"] in members]),
        )
        for name, members in groups.items()
    }


def threshold_for(confidence: np.ndarray, labels: np.ndarray, right_flagged: float) -> float:
    """The confidence below which `right_flagged` of the right captions fall."""
    return float(np.quantile(confidence[labels == "right"], right_flagged))


def flag_rates(confidence: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """The share of each label's captions below `threshold`, and of all; and among the captions
    shown without "not sure", the share judged right ("shown right") and wrong ("shown wrong")."""
    rates = {
        label: float((confidence[labels == label] < threshold).mean()) for label in LABELS if (labels == label).any()
    }
    shown = confidence >= threshold
    kept = {
        "shown right": float((labels[shown] == "right").mean()) if shown.any() else float("nan"),
        "shown wrong": float((labels[shown] == "wrong").mean()) if shown.any() else float("nan"),
    }
    return rates | {"all": float((confidence < threshold).mean())} | kept


def logit(confidence: np.ndarray) -> np.ndarray:
    clipped = np.clip(confidence, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def platt_to_eye(confidence: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, c): P(judged right) = sigmoid(a * logit(confidence) + c), fitted by logistic regression."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6).fit(logit(confidence)[:, None], labels == "right")
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def rescaled(confidence: np.ndarray, a: float, c: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * logit(confidence) + c)))


def held_out_reliability(confidence, labels, bins: int = 5, seed: int = 0) -> list[dict]:
    """Bins of equal count of the by-eye confidence, each half rescaled by a fit on the other half:
    each bin's mean confidence and share judged right."""
    order = np.random.default_rng(seed).permutation(len(confidence))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    eye = np.zeros(len(confidence))
    for fit, held in (halves, halves[::-1]):
        eye[held] = rescaled(confidence[held], *platt_to_eye(confidence[fit], labels[fit]))
    return reliability_bins(eye, labels, bins)


def reliability_bins(confidence, labels, bins: int = 5) -> list[dict]:
    """Bins of equal count of an (already held-out) confidence: mean confidence and share judged right."""
    ranked = np.argsort(confidence, kind="stable")
    return [
        {
            "captions": len(rows),
            "mean_confidence": float(confidence[rows].mean()),
            "share_right": float((labels[rows] == "right").mean()),
        }
        for rows in np.array_split(ranked, bins)
    ]


def plot_reliability(curves: dict[str, list[dict]], threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.2, 4.2))
    for name, bins in curves.items():
        axis.plot([b["mean_confidence"] for b in bins], [b["share_right"] for b in bins], marker="o", label=name)
    axis.plot([0, 1], [0, 1], color="lightgrey", linewidth=0.8, label="perfectly calibrated")
    axis.axvline(threshold, color="grey", linestyle="--", label=f'"not sure" below {threshold:.2f}')
    axis.set(
        xlabel="confidence = chance a person calls it right (bin mean, held out)",
        ylabel="share judged right by eye",
        xlim=(0, 1),
        ylim=(0, 1),
        title="The default preset's own captions, judged by eye",
    )
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def held_out_rates(confidence, labels, right_flagged: float, repeats: int = 200, seed: int = 0) -> dict[str, float]:
    """The rates of a threshold chosen on one random half, measured on the other (mean over halvings)."""
    rng = np.random.default_rng(seed)
    measured = []
    for _ in range(repeats):
        order = rng.permutation(len(confidence))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for fit, held in (halves, halves[::-1]):
            threshold = threshold_for(confidence[fit], labels[fit], right_flagged)
            measured.append(flag_rates(confidence[held], labels[held], threshold))
    return {key: float(np.mean([m[key] for m in measured])) for key in measured[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--right-flagged", type=float, default=0.25, help="share of right captions marked")
    parser.add_argument("--preset-dir", type=Path, help="write the threshold into this preset's calibration")
    parser.add_argument(
        "--to-eye",
        action="store_true",
        help="rescale the calibration so the confidence is the chance a person calls the caption right",
    )
    parser.add_argument(
        "--confidence",
        choices=("shipped", "refit"),
        default="shipped",
        help="refit: the calibration confidence_by_eye --preset-dir refitted on the by-eye labels (already the "
        "chance a person calls a caption right), measured out of fold",
    )
    parser.add_argument("--plot", type=Path, help="draw the by-eye reliability plot here (PNG)")
    add_output_argument(parser, "not_sure_threshold")
    args = parser.parse_args()
    sets = shipped_confidences(name=f"{args.confidence}_confidence")
    platt, curves = None, None
    if args.confidence == "refit":
        curves = {name: reliability_bins(values, marks) for name, (values, marks) in sets.items()}
    if args.to_eye:
        every = np.concatenate([c for c, _ in sets.values()]), np.concatenate([m for _, m in sets.values()])
        platt = platt_to_eye(*every)
        curves = {name: held_out_reliability(values, marks) for name, (values, marks) in sets.items()}
        sets = {name: (rescaled(values, *platt), marks) for name, (values, marks) in sets.items()}
    confidence, labels = sets["COCO dev"]
    threshold = round(threshold_for(confidence, labels, args.right_flagged), 6)  # as the calibration stores it
    in_sample = {name: flag_rates(values, marks, threshold) for name, (values, marks) in sets.items()}
    held_out = held_out_rates(confidence, labels, args.right_flagged)
    promise = (
        f"judged by eye on COCO dev photos, 'not sure' marks {100 * held_out['right']:.0f}% of the right "
        f"captions and {100 * held_out['wrong']:.0f}% of the wrong ones; of the captions shown without it, "
        f"{100 * held_out['shown right']:.0f}% were judged right and {100 * held_out['shown wrong']:.0f}% wrong "
        "(held out; benchmarks/results/not_sure_threshold.md)"
    )
    if args.preset_dir:
        from sat_tf.models.preset import CONFIG_FILE
        from sat_tf.workflows.calibration_store import preset_calibration, save_calibration

        info = json.loads((args.preset_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        calibration = preset_calibration(info, args.preset_dir)
        if calibration is None:
            raise SystemExit(f"{args.preset_dir}: the preset has no confidence calibration")
        if platt is not None:  # sigmoid(a * (bias + w.x) + c): the same model with scaled weights
            a, c = platt
            calibration = dataclasses.replace(
                calibration, weights=calibration.weights * a, bias=a * calibration.bias + c
            )
        save_calibration(args.preset_dir, dataclasses.replace(calibration, not_sure_below=threshold, promise=promise))
    if args.plot and curves is not None:
        plot_reliability(curves, threshold, args.plot)
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "threshold": threshold,
        "promise": promise,
        "confidence": args.confidence,
        "to_eye": None if platt is None else {"a": platt[0], "c": platt[1]},
        "reliability_held_out": curves,
        "in_sample": in_sample,
        "held_out_coco_dev": held_out,
    }
    lines = [
        f"'Not sure' below {threshold:.3f}: the confidence under which {100 * args.right_flagged:.0f}% of the "
        "right COCO dev captions fall (the default preset's own captions, judged by eye).",
        "",
        "| captions | right marked | partly right marked | wrong marked | all marked | shown: judged right "
        "| shown: judged wrong |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [*[(f"{name}, in sample", rates) for name, rates in in_sample.items()], ("COCO dev, held out", held_out)]
    for name, rates in rows:
        keys = (*LABELS, "all", "shown right", "shown wrong")
        cells = " | ".join(f"{100 * rates[k]:.0f}%" if k in rates else "-" for k in keys)
        lines.append(f"| {name} | {cells} |")
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
