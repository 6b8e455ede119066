"""Runs `sat-tf demo` as a user would (fresh process) and records its metrics and wall time.

python -m benchmarks.speed.demo_benchmark [--output benchmarks/results/demo.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from benchmarks.common import add_output_argument
from sat_tf.utils.atomic import write_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_argument(parser, "demo.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as output_dir:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "sat_tf.cli", "demo", "--output-dir", output_dir],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall_seconds = time.perf_counter() - started
        with open(os.path.join(output_dir, "demo_metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
    result = {
        "machine": common.machine(),
        "command": "python -m benchmarks.speed.demo_benchmark",
        "wall_seconds": wall_seconds,
        **{
            k: metrics[k]
            for k in (
                "BLEU-1",
                "BLEU-4",
                "phrase_localization",
                "word_localization",
                "num_phrases",
                "train_steps",
                "train_tokens_per_second",
                "train_seconds",
            )
        },
    }
    print(json.dumps(result, indent=2))
    write_json_atomic(args.output, result)


if __name__ == "__main__":
    main()
