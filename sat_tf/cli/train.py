"""`sat-tf train`: train a captioner with the custom distributed loop."""

from __future__ import annotations

import argparse
from pathlib import Path

from sat_tf.cli.common import run_config

NAME, HELP = "train", "train a captioner with the custom distributed loop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sat_tf.workflows.flags import add_config_arguments, add_section_flags

    parser.add_argument(
        "--output-dir", required=True, help="the run folder: checkpoints, logs, models, run_config.json"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    add_config_arguments(parser)
    for section in ("data", "model", "training", "validation", "decoding", "scst"):
        add_section_flags(parser, section)


def run(args) -> None:
    from sat_tf.workflows import train_captioner

    result = train_captioner(run_config(args), args.output_dir, resume=args.resume)
    output = Path(args.output_dir)
    selected = output / "best_model.keras"
    chosen = (
        f"{selected} (best validation epoch; last epoch: {output / 'model.keras'})"
        if selected.is_file()
        else str(output / "model.keras")
    )
    print(f"trained {result.steps} steps at {result.tokens_per_second:,.0f} target tokens/s; model: {chosen}")
