"""Does a caption's confidence tell right captions from wrong ones?

Per image: the best beam-3 caption, its confidence (`DecodedCaptions.confidence`: the geometric-mean
token probability), and its CIDEr-D against the image's references (document frequencies from the
same split). "Right" = per-image CIDEr-D above the split's median. Reported: the AUROC of the
confidence for right vs. wrong, on Flickr8k dev (in domain) and the COCO photos (out of domain);
the same with the tagger's evidence (confidence halved when a tag at least 0.5 probable that names
a COCO object goes unnamed in the caption); and the confidence at the Flickr8k dev median, the
threshold below which the page and `sat-tf caption` say "not sure".

    python -m benchmarks.quality.confidence --model flickr8k_lite0 [--output benchmarks/results/confidence]
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import coco_data, command_line, flickr_dev, machine, write_report  # noqa: E402  # noqa: E402
from sat_tf.data.coco_words import coco_category  # noqa: E402
from sat_tf.data.images import load_image  # noqa: E402
from sat_tf.data.sources import load_captions  # noqa: E402
from sat_tf.evaluation.calibration import per_photo_cider  # noqa: E402
from sat_tf.evaluation.ranking import auroc  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.inference.tag_guidance import caption_names  # noqa: E402
from sat_tf.workflows.caption import decode_with_tags  # noqa: E402
from sat_tf.workflows.models import load_captioner  # noqa: E402


def contradicted(caption: str, tags, min_probability: float = 0.5) -> bool:
    """A confident tag that names a COCO object and that the caption does not name."""
    return any(
        t.probability >= min_probability and coco_category(t.word) and not caption_names(caption, t.word) for t in tags
    )


def measure(model, data, beam_size: int) -> dict:
    captions = load_captions(data, model.encoder.image_size, verbose=False)
    images = np.stack([load_image(p, model.encoder.image_size) for p in captions.image_paths])
    candidates, tags, _ = decode_with_tags(model, DecodingConfig(beam_size=beam_size), images)
    best = candidates.best()
    cider = per_photo_cider(best.texts, captions)
    right = cider > np.median(cider)
    confidence = best.confidence
    with_tags = np.where(
        [contradicted(text, image_tags) for text, image_tags in zip(best.texts, tags)], confidence / 2, confidence
    )
    return {
        "images": len(cider),
        "median_cider_d": float(np.median(cider)),
        "auroc_confidence": auroc(confidence, right),
        "auroc_confidence_with_tags": auroc(with_tags, right),
        "median_confidence": float(np.median(confidence)),
        "share_contradicted_by_a_tag": float(np.mean(with_tags < confidence)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flickr8k_lite0")
    parser.add_argument("--beam-size", type=int, default=3)
    add_output_argument(parser, "confidence")
    args = parser.parse_args()
    model = load_captioner(args.model)
    rows = {
        "Flickr8k dev (1,000 images)": measure(model, flickr_dev(), args.beam_size),
        "COCO val2017 (79 photos)": measure(model, coco_data(), args.beam_size),
    }
    report = {
        "machine": machine(),
        "model": args.model,
        "command": command_line(__spec__.name, args),
        "rows": rows,
        "not_sure_below": rows["Flickr8k dev (1,000 images)"]["median_confidence"],
    }
    lines = [
        "| data | AUROC, confidence | AUROC, confidence + tags | median confidence | captions a tag contradicts |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['auroc_confidence']:.3f} | {r['auroc_confidence_with_tags']:.3f} | "
        f"{r['median_confidence']:.3f} | {100 * r['share_contradicted_by_a_tag']:.0f}% |"
        for name, r in rows.items()
    ]
    print("\n".join(lines))
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
