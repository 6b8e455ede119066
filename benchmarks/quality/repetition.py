"""Words said twice ("a bathroom with a toilet and a toilet"): how often a model's captions say a
content word (any word but `sat_tf_edge.text.FUNCTION_WORDS`) more than once, against how often
people's reference captions do, and what `no_repeat_content_words` (the decoding rule that lets a
hypothesis say each content word once) does to the scores.

Each model is decoded with its own settings (tag guidance off), with the rule off and on, on the
COCO val2014 dev photos (100), coco_mini (79, original size, with grounding) and Flickr8k dev
(1,000 photos).

    python -m benchmarks.quality.repetition --model everyday_selftrained_lite0_448 \
        [--output benchmarks/results/repetition]
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import coco_data, coco_dev, command_line, flickr_dev, machine, write_report  # noqa: E402
from benchmarks.quality.preset_card import COCO_INSTANCES, card_of_split, load_split  # noqa: E402
from sat_tf.workflows.caption import load_for_captioning  # noqa: E402
from sat_tf_edge.text import repeated_content_words  # noqa: E402

SPLITS = {"COCO val2014 dev": coco_dev, "COCO val2017 (coco_mini)": coco_data, "Flickr8k dev": flickr_dev}


def people_repeating_a_content_word(split) -> float:
    """The share of a split's reference captions that say a content word twice."""
    references = [c for captions in split.captions.references().values() for c in captions]
    return float(np.mean([bool(repeated_content_words(c.lower().rstrip(" ."))) for c in references]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", nargs="+", default=["everyday_selftrained_lite0_448"], help="preset names, run folders or files"
    )
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    add_output_argument(parser, "repetition")
    args = parser.parse_args()
    rows, people, splits = [], {}, {}
    for reference in args.model:
        loaded = load_for_captioning([reference], overrides={"decoding": {"tag_guidance": "off"}})
        size = loaded.model.members()[0].encoder.image_size
        for name in args.splits:
            if (name, size) not in splits:
                instances = COCO_INSTANCES if "coco_mini" in name else None
                splits[name, size] = load_split(SPLITS[name](), size, instances)
                people[name] = people_repeating_a_content_word(splits[name, size])
            for rule in (False, True):
                decoding = dataclasses.replace(loaded.decoding, no_repeat_content_words=rule)
                card = card_of_split(loaded.model, decoding, splits[name, size])
                rows.append({"model": reference, "data": name, "no_repeat_content_words": rule, **card})
                print(reference, name, rule, {k: card[k] for k in ("BLEU-4", "CIDEr")}, flush=True)
                print(f"  repeating a content word: {card['captions_repeating_a_content_word']:.3f}", flush=True)
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "people_repeating_a_content_word": people,
        "rows": rows,
    }
    lines = [
        "| model | data | content words once | BLEU-4 | METEOR | CIDEr | captions saying a content word twice "
        "(people's references) | repeated trigram | grounding lift / peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        grounding = f"{r['lift']:.2f}x / {100 * r['peak_on_object']:.0f}%" if "lift" in r else "-"
        lines.append(
            f"| {r['model']} | {r['data']} | {'on' if r['no_repeat_content_words'] else 'off'} | {r['BLEU-4']:.1f} | "
            f"{r['METEOR']:.1f} | {r['CIDEr']:.1f} | {100 * r['captions_repeating_a_content_word']:.1f}% "
            f"({100 * people[r['data']]:.1f}%) | {100 * r['captions_repeating_a_trigram']:.1f}% | {grounding} |"
        )
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
