"""Photos as people take them: does a sharp, large photo read worse than the soft ones the model
trained on, and does shrinking it first (an inference-side fix) help?

Every training photo is 224-256 px (Flickr8k 224, the COCO photos 256), blown up to the encoder's
448 px, so soft. coco_mini (COCO val2017, 79 photos) holds original-size photos (640 px), which the
image contract resizes straight to 448 (Pillow bilinear, antialiased): sharp. This study decodes
coco_mini once per way of preparing the photo, with each model's own decoding settings (tag
guidance off, beam 3), and reports the scores, the grounding, and against `original` the paired
bootstrap 95% interval of the mean per-photo CIDEr-D difference (79 photos are few: an interval
that holds 0 is no evidence either way) and the share of photos given the very same caption (a
model that reads a photo the same however it was taken scores 100%):

- `original`: the contract alone (what `sat-tf caption` does);
- the training augmentation's photo views (`sat_tf.data.photo_views`), then the contract:
  `shrink-S` (first shrunk to S px on its longer side: as soft as a training photo), `jpeg-Q`
  (re-encoded as JPEG at quality Q), `sharpen-P` (an unsharp mask).

    python -m benchmarks.studies.input_resolution --model everyday_lite0_448 everyday_selftrained_lite0_448 \
        [--output benchmarks/results/input_resolution]
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import coco_data, command_line, machine, write_report  # noqa: E402
from benchmarks.quality.preset_card import COCO_INSTANCES, card_of_captions, load_split  # noqa: E402
from sat_tf.data.photo_views import PhotoView  # noqa: E402
from sat_tf.evaluation.calibration import per_photo_cider  # noqa: E402
from sat_tf.workflows.caption import decode, load_for_captioning  # noqa: E402
from sat_tf_edge.images import decode_image, resize_image  # noqa: E402

PREPARATIONS = ("original", "shrink-320", "shrink-256", "shrink-224", "jpeg-50")  # first: the one compared with
REPORTED = ("BLEU-4", "METEOR", "CIDEr", "lift", "peak_on_object")
BOOTSTRAP_RESAMPLES = 2000


def paired_bootstrap_interval(differences: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-photo differences, resampling photos with replacement."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(differences), size=(BOOTSTRAP_RESAMPLES, len(differences)))
    means = differences[rows].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def prepared_photo(path: str, preparation: str, size: int) -> np.ndarray:
    """One photo seen through a `PhotoView` (the training augmentation's), then the contract's resize."""
    return resize_image(PhotoView(preparation).apply(decode_image(path)), size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", nargs="+", default=["everyday_selftrained_lite0_448"], help="preset names, run folders or files"
    )
    parser.add_argument("--preparations", nargs="+", default=list(PREPARATIONS))
    add_output_argument(parser, "input_resolution")
    args = parser.parse_args()
    rows, split = [], None
    for reference in args.model:
        loaded = load_for_captioning([reference], overrides={"decoding": {"tag_guidance": "off"}})
        size = loaded.model.members()[0].encoder.image_size
        split = split or load_split(coco_data(), size, COCO_INSTANCES)
        baseline, first_texts = None, None
        for preparation in args.preparations:
            images = np.stack([prepared_photo(p, preparation, size) for p in split.captions.image_paths])
            best = decode(loaded.model, loaded.decoding, images=images).best()
            card = card_of_captions(loaded.model, split, best)
            cider = 100 * per_photo_cider(list(best.texts), split.captions)
            texts = list(best.texts)
            baseline = cider if baseline is None else baseline
            first_texts = texts if first_texts is None else first_texts
            interval = paired_bootstrap_interval(cider - baseline)
            same = float(np.mean([a == b for a, b in zip(texts, first_texts)]))
            row = {"model": reference, "preparation": preparation, **card, "cider_difference_interval": interval}
            rows.append({**row, "same_caption_as_first": same, "captions": texts})
            print(reference, preparation, {k: round(card[k], 3) for k in REPORTED}, interval, same, flush=True)
    lines = [
        "# Photos as people take them: coco_mini (79 COCO val2017 photos, original size) prepared several ways",
        "",
        f"`{command_line(__spec__.name, args)}`; {machine()}; beam 3, each model's decoding, tag guidance off.",
        "",
        "| model | preparation | BLEU-4 | METEOR | CIDEr | per-photo CIDEr-D against the first, 95% | "
        "same caption as the first | attention lift | peak on object |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["cider_difference_interval"]
        lines.append(
            f"| {row['model']} | {row['preparation']} | {row['BLEU-4']:.1f} | {row['METEOR']:.1f} | "
            f"{row['CIDEr']:.1f} | {low:+.1f} to {high:+.1f} | {100 * row['same_caption_as_first']:.0f}% | "
            f"{row['lift']:.2f}x | "
            f"{100 * row['peak_on_object']:.0f}% |"
        )
    report = {"command": command_line(__spec__.name, args), "machine": machine(), "rows": rows}
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
