"""Repeated phrases and what blocking them costs: Flickr8k dev (and the COCO photos) captioned
with `no_repeat_ngram_size` 0 (off), 2, 3 and 4; scores, the share of captions that repeat a
trigram, and distinct words used.

    python -m benchmarks.quality.ngram_blocking --model flickr8k_lite0 [--sizes 0 2 3 4]
        [--output benchmarks/results/ngram_blocking]
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import SCORE_COLUMNS as COLUMNS  # noqa: E402
from benchmarks.common import coco_data, command_line, flickr_dev, machine, write_report  # noqa: E402  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.workflows import evaluate_captioner  # noqa: E402


def repeats_a_trigram(caption: str) -> bool:
    words = caption.split()
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(trigrams) != len(set(trigrams))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flickr8k_lite0")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 2, 3, 4])
    add_output_argument(parser, "ngram_blocking")
    args = parser.parse_args()
    rows = {}
    for dataset, data in (("Flickr8k dev (1,000 images)", flickr_dev()), ("COCO val2017 (79 photos)", coco_data())):
        for size in args.sizes:
            decoding = DecodingConfig(beam_size=args.beam_size, no_repeat_ngram_size=size)
            report = evaluate_captioner([args.model], data, decoding, verbose=False)
            captions = list(report["captions"].values())
            rows[f"{dataset}, no_repeat_ngram_size {size}"] = {
                **{c: report[c] for c in COLUMNS},
                "captions_repeating_a_trigram": sum(map(repeats_a_trigram, captions)) / len(captions),
                "distinct_words": len({w for c in captions for w in c.split()}),
            }
            print(dataset, size, rows[f"{dataset}, no_repeat_ngram_size {size}"], flush=True)
    report = {
        "machine": machine(),
        "model": args.model,
        "command": command_line(__spec__.name, args),
        "decoding": dataclasses.asdict(DecodingConfig(beam_size=args.beam_size)),
        "rows": rows,
    }
    lines = [
        "| data, n-gram blocking | " + " | ".join(COLUMNS) + " | captions repeating a trigram | distinct words |",
        "|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    lines += [
        f"| {name} | "
        + " | ".join(f"{r[c]:.1f}" for c in COLUMNS)
        + f" | {100 * r['captions_repeating_a_trigram']:.1f}% | {r['distinct_words']} |"
        for name, r in rows.items()
    ]
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
