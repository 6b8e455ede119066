"""`sat-tf demo`: train and evaluate on generated data, write attention plots."""

from __future__ import annotations

import argparse

NAME, HELP = "demo", "train and evaluate on generated data, write attention plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="sat_tf_demo")
    parser.add_argument("--fast", action="store_true", help="tiny run that checks every stage (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="default", choices=["default", "mirrored"])


def run(args) -> None:
    from sat_tf.demo import DemoConfig, run_demo

    config = DemoConfig.fast() if args.fast else DemoConfig()
    config.seed = args.seed
    run_demo(args.output_dir, config, strategy=args.strategy)
