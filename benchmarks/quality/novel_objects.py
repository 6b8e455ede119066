"""Tag-guided decoding (novel-object captioning): captions with and without the encoder's ImageNet
tags as constraints, on everyday COCO photos (out of Flickr8k's domain) and on Flickr8k dev (in
domain, where "auto" should change little); plus the tagger's accuracy on COCO's annotated objects.

Rows per dataset: tag guidance off, auto (constrain only where a confident tag is not named) and
on (constrain wherever a tag reaches the "on" threshold), all with the model's beam search.
Tagger accuracy (COCO instance annotations): of the tags at or above each threshold whose word
names a COCO category (`sat_tf.data.coco_words`), the share whose category is annotated in
the photo; and the share of photos whose top tag names an annotated category.

    python -m benchmarks.quality.novel_objects --model flickr8k_lite0 [--skip-flickr]
        [--output benchmarks/results/novel_objects]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from benchmarks.common import COCO, add_output_argument, coco_data, flickr_dev

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import SCORE_COLUMNS as COLUMNS  # noqa: E402
from benchmarks.common import command_line, dev_scores, machine, write_report  # noqa: E402
from sat_tf.data.coco_words import coco_category  # noqa: E402
from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.models.imagenet_tagger import shared_tagger  # noqa: E402
from sat_tf.workflows.caption import decode_with_tags  # noqa: E402
from sat_tf.workflows.models import load_captioner  # noqa: E402

MODES = ("off", "auto", "on")


def tagger_accuracy(variant: str, thresholds=(0.1, 0.3, 0.5)) -> dict:
    instances = json.loads((COCO / "instances_val2017.json").read_text())
    names = {c["id"]: c["name"] for c in instances["categories"]}
    present: dict[int, set] = {}
    for annotation in instances["annotations"]:
        present.setdefault(annotation["image_id"], set()).add(names[annotation["category_id"]])
    files = {image["id"]: image["file_name"] for image in instances["images"]}
    ids = sorted(files)
    images = np.stack([load_image(COCO / "val2017" / files[i], 224) for i in ids])
    tags = shared_tagger(variant).tags(images, min_probability=min(thresholds), max_tags=5)
    report = {"images": len(ids)}
    for threshold in thresholds:
        named = [
            (coco_category(t.word), present.get(i, set()))
            for i, image_tags in zip(ids, tags)
            for t in image_tags
            if t.probability >= threshold and coco_category(t.word)
        ]
        report[f"tags >= {threshold:g} naming a COCO category"] = len(named)
        report[f"precision of those tags, >= {threshold:g}"] = (
            sum(category in annotated for category, annotated in named) / len(named) if named else None
        )
    top = [
        (coco_category(image_tags[0].word), present.get(i, set()))
        for i, image_tags in zip(ids, tags)
        if image_tags and coco_category(image_tags[0].word)
    ]
    report["photos whose top tag names a COCO category"] = len(top)
    report["share of those naming an annotated category"] = sum(c in a for c, a in top) / len(top) if top else None
    return report


def side_by_side(model, decoding: DecodingConfig, count: int) -> list[dict]:
    """The first `count` COCO photos: free caption, auto caption, tags, first reference."""
    captions = json.loads((COCO / "captions_val2017.json").read_text())
    files = {image["id"]: image["file_name"] for image in captions["images"]}
    first = {}
    for annotation in captions["annotations"]:
        first.setdefault(annotation["image_id"], annotation["caption"].strip())
    ids = sorted(files)[:count]
    size = model.encoder.image_size
    images = np.stack([load_image(COCO / "val2017" / files[i], size) for i in ids])
    free = decode_with_tags(model, dataclasses.replace(decoding, tag_guidance="off"), images)
    auto = decode_with_tags(model, dataclasses.replace(decoding, tag_guidance="auto"), images)
    return [
        {
            "photo": files[i],
            "reference": first[i],
            "free": free[0].best_texts[row],
            "auto": auto[0].best_texts[row],
            "guided": auto[2][row],
            "tags": ", ".join(f"{t.word} {t.probability:.2f}" for t in auto[1][row]),
        }
        for row, i in enumerate(ids)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flickr8k_lite0")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--skip-flickr", action="store_true", help="only the 79 COCO photos")
    parser.add_argument("--side-by-side", type=int, default=15)
    add_output_argument(parser, "novel_objects")
    args = parser.parse_args()
    model = load_captioner(args.model)
    decoding = DecodingConfig(beam_size=args.beam_size)
    datasets = {"COCO val2017 (79 photos)": coco_data()}
    if not args.skip_flickr:
        datasets["Flickr8k dev (1,000 images)"] = flickr_dev()
    rows = {}
    for dataset, data in datasets.items():
        for mode in MODES:
            rows[f"{dataset}, tags {mode}"] = dev_scores(
                [args.model], data, dataclasses.replace(decoding, tag_guidance=mode)
            )
            print(
                f"{dataset}, tags {mode}: "
                + ", ".join(f"{c} {rows[f'{dataset}, tags {mode}'][c]:.1f}" for c in COLUMNS),
                flush=True,
            )
    report = {
        "machine": machine(),
        "model": args.model,
        "decoding": dataclasses.asdict(decoding),
        "command": command_line(__spec__.name, args),
        "rows": rows,
        "tagger_accuracy": tagger_accuracy(model.encoder.backbone_name),
        "side_by_side": side_by_side(model, decoding, args.side_by_side),
    }
    lines = ["| data, tag guidance | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(f"{scores[c]:.1f}" for c in COLUMNS) + " |" for name, scores in rows.items()]
    lines += ["", "| photo | tags | caption (tags off) | caption (tags auto) | a reference |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['photo']} | {r['tags']} | {r['free']} | {r['auto']}{' (guided)' if r['guided'] else ''} | "
        f"{r['reference']} |"
        for r in report["side_by_side"]
    ]
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
