"""Where attention lands: for each caption word that names an object annotated in a COCO photo,
the attention mass on the object's masks, the object's area share (what uniform attention would
put there), the lift, how often the attention peak lies on the object and the maps' spread
(`sat_tf.evaluation.grounding`), on the COCO photos, with tag guidance off and auto.

    python -m benchmarks.quality.grounding --model flickr8k_lite0 [--output benchmarks/results/grounding]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    COCO,  # noqa: E402
    command_line,
    machine,
    write_report,
)
from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.evaluation.grounding import attention_grounding, coco_object_masks  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.workflows.caption import decode_with_tags  # noqa: E402
from sat_tf.workflows.models import load_captioner  # noqa: E402

MEASURES = ("object_words", "mass", "share", "lift", "peak_on_object", "perplexity")


def coco_photos(image_size: int) -> tuple[np.ndarray, list]:
    """The COCO photos at `image_size` and each one's annotated objects (masks)."""
    instances = str(COCO / "instances_val2017.json")
    files = sorted(image["file_name"] for image in json.loads(open(instances).read())["images"])
    images = np.stack([load_image(COCO / "val2017" / f, image_size) for f in files])
    return images, coco_object_masks(instances, files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flickr8k_lite0")
    parser.add_argument("--beam-size", type=int, default=3)
    add_output_argument(parser, "grounding")
    args = parser.parse_args()
    model = load_captioner(args.model)
    images, objects = coco_photos(model.encoder.image_size)
    rows = {}
    for mode in ("off", "auto"):
        decoding = DecodingConfig(beam_size=args.beam_size, tag_guidance=mode)
        best = decode_with_tags(model, decoding, images)[0].best()
        result = attention_grounding([text.split() for text in best.texts], best.alphas, objects, model.feature_grid)
        rows[f"tags {mode}"] = {k: result[k] for k in MEASURES}
        print(mode, rows[f"tags {mode}"], flush=True)
    report = {
        "machine": machine(),
        "model": args.model,
        "photos": len(images),
        "grid": list(model.feature_grid),
        "command": command_line(__spec__.name, args),
        "decoding": dataclasses.asdict(DecodingConfig(beam_size=args.beam_size)),
        "rows": rows,
    }
    lines = [
        "| COCO photos, tag guidance | object words | attention mass on the object | area share | lift | "
        "peak on the object | spread (cells) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['object_words']} | {r['mass']:.3f} | {r['share']:.3f} | {r['lift']:.2f}x | "
        f"{100 * r['peak_on_object']:.0f}% | {r['perplexity']:.1f} |"
        for name, r in rows.items()
    ]
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
