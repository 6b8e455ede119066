"""Where a benchmark writes its results (no TensorFlow import: the load generators use it too)."""

from __future__ import annotations

import argparse

DEFAULT_DIR = "runs/benchmarks"  # outside the committed results: a rerun never overwrites them


def add_output_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """`--output`, defaulting to runs/benchmarks/<name>; pass benchmarks/results/... to update the
    committed results (then run benchmarks/results_page.py)."""
    parser.add_argument(
        "--output",
        default=f"{DEFAULT_DIR}/{name}",
        help=f"results file; default under {DEFAULT_DIR}/ (benchmarks/results/... updates the committed ones)",
    )
