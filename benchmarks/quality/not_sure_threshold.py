"""The "not sure" threshold in a person's terms: the confidence below which a chosen share of the
captions judged right by eye is marked, and how many of the wrong ones that marks.

Reads the judged pairs (`benchmarks/labels/caption_judgments.json`) and the shipped confidence of
the preset's own captions that `benchmarks.quality.confidence_by_eye` recorded
(`benchmarks/results/confidence_by_eye.json`, `signals_by_pair`), on the COCO dev photos (val2014
dev and coco_mini). The threshold is the `--right-flagged` quantile of the right captions'
confidence; the rates it gives are reported in sample and held out (200 random halvings: the
threshold chosen on one half, the rates measured on the other). With `--preset-dir`, the threshold
and its promise are written into that preset's calibration (`save_calibration`; the weights and the
confidence itself are unchanged).

    python -m benchmarks.quality.not_sure_threshold --right-flagged 0.25 \
        --preset-dir sat_tf/presets/everyday_lite0_448 --output benchmarks/results/not_sure_threshold
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


def shipped_confidences(results: Path = RESULTS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """dev set group -> (confidence, label) of the preset's own judged captions."""
    signals = json.loads(results.read_text())["signals_by_pair"]
    rows = [(p, signals[str(p["id"])]["shipped_confidence"]) for p in load_judgments()]
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
    """The share of each label's captions below `threshold`, and of all."""
    rates = {
        label: float((confidence[labels == label] < threshold).mean()) for label in LABELS if (labels == label).any()
    }
    return rates | {"all": float((confidence < threshold).mean())}


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
    add_output_argument(parser, "not_sure_threshold")
    args = parser.parse_args()
    sets = shipped_confidences()
    confidence, labels = sets["COCO dev"]
    threshold = round(threshold_for(confidence, labels, args.right_flagged), 6)  # as the calibration stores it
    in_sample = {name: flag_rates(values, marks, threshold) for name, (values, marks) in sets.items()}
    held_out = held_out_rates(confidence, labels, args.right_flagged)
    promise = (
        f"judged by eye on COCO dev photos, 'not sure' marks {100 * held_out['right']:.0f}% of the right "
        f"captions and {100 * held_out['wrong']:.0f}% of the wrong ones (held out; "
        "benchmarks/results/not_sure_threshold.md)"
    )
    if args.preset_dir:
        from sat_tf.models.preset import CONFIG_FILE
        from sat_tf.workflows.calibration_store import preset_calibration, save_calibration

        info = json.loads((args.preset_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        calibration = preset_calibration(info, args.preset_dir)
        if calibration is None:
            raise SystemExit(f"{args.preset_dir}: the preset has no confidence calibration")
        save_calibration(args.preset_dir, dataclasses.replace(calibration, not_sure_below=threshold, promise=promise))
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "threshold": threshold,
        "promise": promise,
        "in_sample": in_sample,
        "held_out_coco_dev": held_out,
    }
    lines = [
        f"'Not sure' below {threshold:.3f}: the confidence under which {100 * args.right_flagged:.0f}% of the "
        "right COCO dev captions fall (the default preset's own captions, judged by eye).",
        "",
        "| captions | right marked | partly right marked | wrong marked | all marked |",
        "|---|---|---|---|---|",
    ]
    rows = [*[(f"{name}, in sample", rates) for name, rates in in_sample.items()], ("COCO dev, held out", held_out)]
    for name, rates in rows:
        cells = " | ".join(f"{100 * rates[k]:.0f}%" if k in rates else "-" for k in (*LABELS, "all"))
        lines.append(f"| {name} | {cells} |")
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
