"""Everyday photos: how much each way of learning COCO's language gives, on every dev set.

Each model (a preset name, run folder or `.keras` file) is decoded with its own decoding settings,
with tag guidance off (the captioner alone) and "auto" (as `sat-tf caption` runs it), on Flickr8k
dev (1,000 photos), the COCO val2014 dev photos (100) and the COCO val2017 photos of coco_mini (79,
with grounding). The photos are read once and shared by every model of the same input size.

    python -m benchmarks.quality.everyday_photos \
        --model flickr8k_lite0_448_distilled runs/everyday_paired runs/everyday_text \
        --output benchmarks/results/everyday_photos

The runs behind the committed table (the `coco-everyday` recipe and its variants) are listed in
docs/captioning.md ("Everyday photos").
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import coco_data, coco_dev, command_line, flickr_dev, machine, write_report  # noqa: E402  # noqa: E402
from benchmarks.quality.novel_objects import side_by_side  # noqa: E402
from benchmarks.quality.preset_card import COCO_INSTANCES, card_of_split, load_split  # noqa: E402
from sat_tf.workflows.caption import load_for_captioning  # noqa: E402

SPLITS = {"Flickr8k dev": flickr_dev, "COCO val2014 dev": coco_dev, "COCO val2017 (coco_mini)": coco_data}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="preset names, run folders or .keras files")
    parser.add_argument("--tag-guidance", nargs="+", default=["off", "auto"], choices=("off", "auto", "on"))
    parser.add_argument(
        "--flickr-tag-guidance",
        nargs="*",
        default=["off"],
        choices=("off", "auto", "on"),
        help="modes for Flickr8k dev (1,000 photos: the slow split; none given: skip it)",
    )
    parser.add_argument(
        "--side-by-side",
        type=int,
        default=15,
        help="caption this many coco_mini photos with every model, free and tag-guided (auto), side by side",
    )
    add_output_argument(parser, "everyday_photos")
    args = parser.parse_args()
    splits: dict = {}  # (name, image size) -> Split, read once
    rows, photos, decodings = [], {}, {}
    for reference in args.model:
        loaded = load_for_captioning([reference])  # read once; each mode only changes the decoding
        size = loaded.model.encoder.image_size
        decodings[reference] = dataclasses.asdict(loaded.decoding)
        for mode in args.tag_guidance:
            decoding = dataclasses.replace(loaded.decoding, tag_guidance=mode)
            for name, data in SPLITS.items():
                if name.startswith("Flickr") and mode not in args.flickr_tag_guidance:
                    continue
                if (name, size) not in splits:
                    instances = COCO_INSTANCES if "coco_mini" in name else None
                    splits[name, size] = load_split(data(), size, instances)
                card = card_of_split(loaded.model, decoding, splits[name, size])
                rows.append({"model": reference, "tag_guidance": mode, "data": name, **card})
                print(f"{reference} tags {mode} {name}: {card['BLEU-4']:.1f} / {card['CIDEr']:.1f}", flush=True)
        if args.side_by_side:
            photos[reference] = side_by_side(loaded.model, loaded.decoding, args.side_by_side)
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "decoding": decodings,  # each model's own; tag_guidance per row
        "rows": rows,
        "side_by_side": photos,
    }
    lines = [
        "| model | tags | data | BLEU-4 | METEOR | CIDEr | repeated trigram | distinct words | grounding lift / peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        grounding = f"{r['lift']:.2f}x / {100 * r['peak_on_object']:.0f}%" if "lift" in r else "-"
        lines.append(
            f"| {r['model']} | {r['tag_guidance']} | {r['data']} | {r['BLEU-4']:.1f} | {r['METEOR']:.1f} | "
            f"{r['CIDEr']:.1f} | {100 * r['captions_repeating_a_trigram']:.1f}% | {r['distinct_words']} | {grounding} |"
        )
    if photos:
        lines += ["", side_by_side_table(photos)]
    write_report(args.output, report, "\n".join(lines))


def side_by_side_table(photos: dict[str, list[dict]]) -> str:
    """One row per photo: a human caption, then each model's free and tag-guided (auto) caption."""
    models = list(photos)
    header = "| photo | a human caption | " + " | ".join(f"{m}: free / auto" for m in models) + " |"
    lines = [header, "|---" * (2 + len(models)) + "|"]
    for row, first in enumerate(photos[models[0]]):
        cells = []
        for model in models:
            photo = photos[model][row]
            guided = photo["auto"] if photo["guided"] else "(same)"
            cells.append(f"{photo['free']} / {guided}")
        lines.append(f"| {first['photo']} | {first['reference']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
