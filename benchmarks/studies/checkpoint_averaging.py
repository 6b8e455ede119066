"""Checkpoint averaging on Flickr8k dev: the mean of the weights of a run's last checkpoints
(Vaswani et al. 2017; an ensemble at no decoding cost) against the run's last model.

    python -m benchmarks.studies.checkpoint_averaging --run runs/flickr8k_ft_bf16_scst12
        --checkpoints runs/scst12_ckpts/ckpt-1683 runs/scst12_ckpts/ckpt-1870 ... [--beams 3]
        [--length-penalties 0 0.5]

Writes the averaged model to `<run>/averaged_model.keras` and scores it with coco-caption (PTB +
METEOR) on the dev split the run selected on (its feature cache).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import SCORE_COLUMNS as COLUMNS  # noqa: E402
from benchmarks.common import command_line, dev_scores, machine, write_report  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data  # noqa: E402
from sat_tf.workflows.models import average_checkpoints, save_captioner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the training run folder (its model.keras gives the layout)")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint prefixes to average")
    parser.add_argument("--beams", type=int, nargs="+", default=[3])
    parser.add_argument("--length-penalties", type=float, nargs="+", default=[0.0])
    add_output_argument(parser, "checkpoint_averaging")
    args = parser.parse_args()
    run = Path(args.run)
    averaged_path = run / "averaged_model.keras"
    save_captioner(average_checkpoints(run / "model.keras", args.checkpoints), averaged_path)
    data = default_evaluation_data(run)
    rows = {}
    for label, model in (
        ("last epoch", run / "model.keras"),
        (f"mean of {len(args.checkpoints)} checkpoints", averaged_path),
    ):
        for beam in args.beams:
            for penalty in args.length_penalties:
                rows[f"{label}, beam {beam}, length penalty {penalty:g}"] = dev_scores(
                    [model], data, DecodingConfig(beam_size=beam, length_penalty=penalty)
                )
    report = {
        "machine": machine(),
        "split": "Flickr8k dev (1,000 images)",
        "command": command_line(__spec__.name, args),
        "rows": rows,
    }
    lines = ["| model, decoding | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[c]:.1f}" for c in COLUMNS) + " |")
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
