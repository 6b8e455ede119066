"""Beam size x length normalisation on Flickr8k dev for one model (or an ensemble): which decoding
setting to ship. Beam search ranks finished hypotheses by log p / length**length_penalty
(`BeamSampler`); 0 ranks by total log-probability, which favours short captions.

    python -m benchmarks.studies.decoding_sweep --model runs/flickr8k_ft_scst [--beams 3 5]
        [--length-penalties 0 0.5 1]

Scores with coco-caption (PTB + METEOR) on the dev split the run selected on (its feature cache).
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import SCORE_COLUMNS as COLUMNS  # noqa: E402
from benchmarks.common import command_line, dev_scores, machine, write_report  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="a run folder (or several: an ensemble)")
    parser.add_argument("--beams", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--length-penalties", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    add_output_argument(parser, "decoding_sweep")
    args = parser.parse_args()
    data = default_evaluation_data(args.model[0])
    rows = {}
    for beam in args.beams:
        for penalty in args.length_penalties:
            rows[f"beam {beam}, length penalty {penalty:g}"] = dev_scores(
                args.model, data, DecodingConfig(beam_size=beam, length_penalty=penalty)
            )
    report = {
        "machine": machine(),
        "split": "Flickr8k dev (1,000 images)",
        "command": command_line(__spec__.name, args),
        "rows": rows,
    }
    lines = ["| decoding | " + " | ".join(COLUMNS) + " | words per caption |", "|---|" + "---|" * (len(COLUMNS) + 1)]
    for name, scores in rows.items():
        metrics = " | ".join(f"{scores[c]:.1f}" for c in COLUMNS)
        lines.append(f"| {name} | {metrics} | {scores['mean_words']:.1f} |")
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
