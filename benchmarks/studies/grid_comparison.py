"""Region grid against grounding and captions: for each trained model (for example the fine-tuned
recipe at 224 px, a 7x7 grid, and at 448 px, 14x14), Flickr8k dev scores with beam 3 on the run's
own validation split, and on the COCO photos where the attention of object words lands
(`sat_tf.evaluation.grounding`: mass on the object, lift over its area share, peak on the object,
spread), tag guidance off.

    sat-tf train --recipe flickr8k-lite0-ft --epochs 3 --data-root ../shared/data/flickr8k --output-dir runs/ft224
    sat-tf train --recipe flickr8k-lite0-ft --epochs 3 --image-size 448 --data-root ../shared/data/flickr8k \\
        --output-dir runs/ft448
    python -m benchmarks.studies.grid_comparison --models runs/ft224 runs/ft448 \\
        [--output benchmarks/results/grid_comparison]
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import command_line, machine, write_report  # noqa: E402
from benchmarks.quality.grounding import MEASURES, coco_photos  # noqa: E402
from sat_tf.evaluation.grounding import attention_grounding  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.workflows.caption import decode  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data, evaluate_captioner  # noqa: E402
from sat_tf.workflows.models import load_captioner  # noqa: E402

SCORES = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def coco_grounding(model, decoding: DecodingConfig) -> dict:
    """Grounding of a model's (an ensemble's: its first member's) attention on the COCO photos."""
    first = model.members()[0]
    images, objects = coco_photos(first.encoder.image_size)
    best = decode(model, decoding, images=images).best()
    result = attention_grounding([t.split() for t in best.texts], best.alphas, objects, first.feature_grid)
    return {key: result[key] for key in MEASURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="run folders (or model files) to compare")
    parser.add_argument("--beam-size", type=int, default=3)
    add_output_argument(parser, "grid_comparison")
    args = parser.parse_args()
    decoding = DecodingConfig(beam_size=args.beam_size)
    rows = {}
    for reference in args.models:
        model = load_captioner(reference)
        grid = "x".join(map(str, model.feature_grid))
        data = default_evaluation_data(reference)
        if data is None:
            raise SystemExit(f"{reference}: not a run folder with a validation split")
        report = evaluate_captioner([reference], data, decoding, verbose=False)
        rows[f"{reference} ({grid}, {model.encoder.image_size} px)"] = {
            **{key: report[key] for key in SCORES},
            **coco_grounding(model, decoding),
        }
        print(reference, rows[list(rows)[-1]], flush=True)
    result = {"machine": machine(), "command": command_line(__spec__.name, args), "rows": rows}
    lines = [
        "| model (grid) | BLEU-4 | METEOR | CIDEr | COCO object words | lift | peak on the object | spread (cells) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['BLEU-4']:.1f} | {r['METEOR']:.1f} | {r['CIDEr']:.1f} | {r['object_words']} | "
        f"{r['lift']:.2f}x | {100 * r['peak_on_object']:.0f}% | {r['perplexity']:.1f} |"
        for name, r in rows.items()
    ]
    write_report(args.output, result, "\n".join(lines))


if __name__ == "__main__":
    main()
