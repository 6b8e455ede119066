"""Sharper attention after training: scaling the attention MLP's score vector v by s divides the
softmax temperature by s (alpha = softmax(s e)), so a trained model's maps can be sharpened with
no other change (every decoder, export and the edge runtime read the same weights). For each
scale: the model's card (`preset_card.card_of_split`: dev scores, repetition, confidence) on
Flickr8k dev and, on the COCO photos, where the attention of object words lands.

    python -m benchmarks.studies.attention_sharpness --model runs/ft448_scst --scales 1 1.5 2 \\
        [--output benchmarks/results/attention_sharpness]
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import coco_data, command_line, flickr_dev, machine, write_report  # noqa: E402  # noqa: E402
from benchmarks.quality.preset_card import COCO_INSTANCES, card_of_split, load_split  # noqa: E402
from sat_tf.workflows.caption import load_for_captioning  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="preset name, run folder or .keras file")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    add_output_argument(parser, "attention_sharpness")
    args = parser.parse_args()
    loaded = load_for_captioning([args.model], overrides={"decoding": {"tag_guidance": "off"}})
    model = loaded.model
    score_vector = model.decoder.attention.score_vector
    trained = score_vector.numpy()
    size = model.encoder.image_size
    dev, coco = load_split(flickr_dev(), size), load_split(coco_data(), size, COCO_INSTANCES)  # read once
    rows = {}
    for scale in args.scales:
        score_vector.assign(trained * scale)
        rows[f"scale {scale:g}"] = {
            "dev": card_of_split(model, loaded.decoding, dev),
            "coco": card_of_split(model, loaded.decoding, coco),
        }
        print(scale, rows[f"scale {scale:g}"], flush=True)
    report = {"machine": machine(), "command": command_line(__spec__.name, args), "rows": rows}
    lines = [
        "| score vector scale | dev BLEU-4 | METEOR | CIDEr | COCO CIDEr | lift | peak on the object "
        "| spread (cells) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['dev']['BLEU-4']:.1f} | {r['dev']['METEOR']:.1f} | {r['dev']['CIDEr']:.1f} | "
        f"{r['coco']['CIDEr']:.1f} | {r['coco']['lift']:.2f}x | {100 * r['coco']['peak_on_object']:.0f}% | "
        f"{r['coco']['perplexity']:.1f} |"
        for name, r in rows.items()
    ]
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
