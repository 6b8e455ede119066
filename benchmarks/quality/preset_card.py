"""A captioner's card: what a person meets, measured in one pass per dataset.

For one model (a preset name, run folder or `.keras` file), decoded with its own decoding
settings (beam size, `<unk>` rule, n-gram blocking; tag guidance off, so the captioner alone is
measured; `--tag-guidance auto` decodes as `sat-tf caption` does), on Flickr8k dev (1,000
images), the COCO val2014 dev photos (100, everyday scenes) and the COCO val2017 photos (79, with
object masks):
- coco-caption scores (BLEU-1/4, METEOR, ROUGE-L, CIDEr);
- repetition: the share of captions that repeat a trigram or say a content word twice, and the
  distinct words used;
- confidence: the AUROC of the caption's confidence for telling captions with per-image CIDEr-D
  above the split's median from those below, and the median confidence (on Flickr8k dev: the
  "not sure" threshold);
- grounding (COCO, `sat_tf.evaluation.grounding`): for caption words naming an annotated object,
  the attention mass on it, the lift over its area share, the peak-on-object rate, the spread.

    python -m benchmarks.quality.preset_card --model flickr8k_lite0 [--output benchmarks/results/preset_card]
    python -m benchmarks.quality.preset_card --model flickr8k_lite0_448 flickr8k_lite0   # the two as one ensemble
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import COCO, coco_data, coco_dev, command_line, flickr_dev, machine, write_report  # noqa: E402  # noqa: E402
from benchmarks.quality.grounding import MEASURES  # noqa: E402
from benchmarks.quality.ngram_blocking import repeats_a_trigram  # noqa: E402
from sat_tf.data.sources import CaptionData, decoder_inputs, load_captions  # noqa: E402
from sat_tf.evaluation.calibration import per_photo_cider  # noqa: E402
from sat_tf.evaluation.grounding import attention_grounding, coco_object_masks  # noqa: E402
from sat_tf.evaluation.metrics import caption_metrics  # noqa: E402
from sat_tf.evaluation.ranking import auroc  # noqa: E402
from sat_tf.workflows.caption import decode, load_for_captioning  # noqa: E402
from sat_tf_edge.text import repeated_content_words  # noqa: E402

COCO_INSTANCES = COCO / "instances_val2017.json"
SCORES = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


@dataclasses.dataclass
class Split:
    """A split read once: its captions, the decoder's inputs and (COCO) the objects' masks."""

    captions: CaptionData
    inputs: dict
    objects: list | None = None


def load_split(data, image_size: int, instances: Path | None = None) -> Split:
    captions = load_captions(data, image_size, verbose=False)
    objects = None
    if instances is not None:
        objects = coco_object_masks(str(instances), [Path(p).name for p in captions.image_paths])
    return Split(captions, decoder_inputs(captions.images, image_size), objects)


def card_of_split(model, decoding, split: Split) -> dict:
    """Scores, repetition, confidence (and grounding, with masks) of one split, decoded once."""
    return card_of_captions(model, split, decode(model, decoding, **split.inputs).best())


def card_of_captions(model, split: Split, best) -> dict:
    """`card_of_split` for captions already decoded (`best`: the split's best hypotheses)."""
    captions = split.captions
    texts = list(best.texts)
    scores = caption_metrics(captions.references(), dict(zip(captions.image_ids, texts)))
    cider = per_photo_cider(texts, captions)
    card = {
        "images": len(texts),
        **{key: scores[key] for key in SCORES},
        "captions_repeating_a_trigram": float(np.mean([repeats_a_trigram(t) for t in texts])),
        "captions_repeating_a_content_word": float(np.mean([bool(repeated_content_words(t)) for t in texts])),
        "distinct_words": len({w for t in texts for w in t.split()}),
        "auroc_confidence": auroc(best.confidence, cider > np.median(cider)),
        "median_confidence": float(np.median(best.confidence)),
    }
    if split.objects is not None:
        grid = model.members()[0].feature_grid  # an ensemble's attention is its first member's
        grounding = attention_grounding([t.split() for t in texts], best.alphas, split.objects, grid)
        card.update({key: grounding[key] for key in MEASURES})
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        nargs="+",
        default=["flickr8k_lite0"],
        help="preset name, run folder or .keras file; several: an ensemble (with the first one's decoding "
        "settings and attention)",
    )
    parser.add_argument(
        "--tag-guidance",
        choices=("off", "auto", "on"),
        default="off",
        help="decode with this tag guidance (off: the captioner alone; auto: as `sat-tf caption` runs it)",
    )
    add_output_argument(parser, "preset_card")
    args = parser.parse_args()
    loaded = load_for_captioning(args.model, overrides={"decoding": {"tag_guidance": args.tag_guidance}})
    model, first = loaded.model, loaded.model.members()[0]
    size = first.encoder.image_size
    rows = {
        "Flickr8k dev": card_of_split(model, loaded.decoding, load_split(flickr_dev(), size)),
        "COCO val2014 dev": card_of_split(model, loaded.decoding, load_split(coco_dev(), size)),
        "COCO val2017": card_of_split(model, loaded.decoding, load_split(coco_data(), size, COCO_INSTANCES)),
    }
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "model": args.model,
        "grid": list(first.feature_grid),
        "decoding": dataclasses.asdict(loaded.decoding),
        "rows": rows,
    }
    lines = [
        "| data | images | BLEU-4 | METEOR | CIDEr | repeating a trigram | distinct words | confidence AUROC "
        "| grounding lift | peak on object | spread (cells) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        grounding = (
            f"{r['lift']:.2f}x | {100 * r['peak_on_object']:.0f}% of {r['object_words']} words | {r['perplexity']:.1f}"
            if "lift" in r
            else "- | - | -"
        )
        lines.append(
            f"| {name} | {r['images']} | {r['BLEU-4']:.1f} | {r['METEOR']:.1f} | {r['CIDEr']:.1f} | "
            f"{100 * r['captions_repeating_a_trigram']:.1f}% | {r['distinct_words']} | {r['auroc_confidence']:.3f} "
            f"| {grounding} |"
        )
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
