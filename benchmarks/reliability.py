"""How far a caption's confidence can be trusted: a reliability plot per dev set.

Each photo is captioned as `sat-tf caption` does (the model's own decoding settings, its caption
tag guidance); its caption is "good" when its CIDEr-D against the photo's references is above the
split's median. The captions are put in bins of equal count by confidence; each bin's share of good
captions is plotted against its mean confidence, with the model's "not sure" threshold, on Flickr8k
dev and COCO val2014 dev. A confidence that tells right from wrong rises from left to right.

    python benchmarks/reliability.py --model everyday_lite0_448 --output benchmarks/results/reliability \
        --plot docs/images/reliability.png
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from outputs import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from confidence import per_image_cider  # noqa: E402
from novel_objects import coco_dev, flickr_dev  # noqa: E402
from preset_card import load_split  # noqa: E402
from reporting import command_line, machine, write_report  # noqa: E402

from sat_tf.evaluation.ranking import auroc  # noqa: E402
from sat_tf.workflows.caption import decode_with_tags, load_for_captioning  # noqa: E402

SPLITS = {"Flickr8k dev": flickr_dev, "COCO val2014 dev": coco_dev}


def reliability_bins(confidence: np.ndarray, good: np.ndarray, bins: int) -> list[dict]:
    """Bins of (nearly) equal count by confidence: each one's range, mean confidence and share of good captions."""
    order = np.argsort(confidence, kind="stable")
    return [
        {
            "captions": len(rows),
            "confidence_from": float(confidence[rows].min()),
            "confidence_to": float(confidence[rows].max()),
            "mean_confidence": float(confidence[rows].mean()),
            "share_good": float(good[rows].mean()),
        }
        for rows in np.array_split(order, bins)
        if len(rows)
    ]


def split_reliability(loaded, split, bins: int) -> dict:
    images = split.inputs["images"]
    candidates, _, _ = decode_with_tags(loaded.model, loaded.decoding, images)
    best = candidates.best()
    cider = per_image_cider(list(best.texts), split.captions)
    good = cider > np.median(cider)
    confidence = np.asarray(best.confidence)
    not_sure = confidence < loaded.decoding.not_sure_below
    return {
        "images": len(confidence),
        "auroc": auroc(confidence, good),
        "not_sure_on_good": float(not_sure[good].mean()),
        "not_sure_on_rest": float(not_sure[~good].mean()),
        "bins": reliability_bins(confidence, good, bins),
    }


def plot(rows: dict, threshold: float, path: str) -> None:
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for name, row in rows.items():
        x = [b["mean_confidence"] for b in row["bins"]]
        y = [b["share_good"] for b in row["bins"]]
        axis.plot(x, y, marker="o", label=f"{name} (AUROC {row['auroc']:.2f})")
    axis.axvline(threshold, color="grey", linestyle="--", label=f'"not sure" below {threshold:.2f}')
    axis.axhline(0.5, color="lightgrey", linewidth=0.8)
    axis.set(xlabel="caption confidence (bin mean)", ylabel="share of captions above the median CIDEr-D")
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["everyday_lite0_448"], help="preset, run folder or .keras")
    parser.add_argument("--bins", type=int, default=5, help="bins of equal count per split")
    parser.add_argument("--plot", default="runs/benchmarks/reliability.png", help="where to draw the plot")
    add_output_argument(parser, "reliability")
    args = parser.parse_args()
    loaded = load_for_captioning(args.model, as_caption_command=True)
    size = loaded.model.members()[0].encoder.image_size
    rows = {name: split_reliability(loaded, load_split(data(), size), args.bins) for name, data in SPLITS.items()}
    plot(rows, loaded.decoding.not_sure_below, args.plot)
    report = {
        "machine": machine(),
        "command": command_line("reliability.py", args),
        "model": args.model,
        "decoding": dataclasses.asdict(loaded.decoding),
        "rows": rows,
    }
    lines = [
        "| data | images | AUROC | not sure on the better half | on the worse half | share good per bin (confidence) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        bins = ", ".join(f"{100 * b['share_good']:.0f}% ({b['mean_confidence']:.2f})" for b in r["bins"])
        lines.append(
            f"| {name} | {r['images']} | {r['auroc']:.3f} | {100 * r['not_sure_on_good']:.0f}% | "
            f"{100 * r['not_sure_on_rest']:.0f}% | {bins} |"
        )
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
