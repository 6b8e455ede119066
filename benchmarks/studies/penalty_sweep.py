"""Measures the doubly stochastic penalty's weight (lambda) and target (tau) on the synthetic demo.

For each setting, runs the full demo (same data, seed and budget) and reports held-out BLEU-4 and
attention localization. The library's defaults (`DEFAULT_PENALTY_WEIGHT`, target "one") come from
this table.

    python -m benchmarks.studies.penalty_sweep [--output benchmarks/results/penalty_sweep.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import machine  # noqa: E402  (benchmarks/common.py)
from sat_tf.demo import DemoConfig, run_demo  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402

SETTINGS = [(0.0, "one"), (0.0001, "one"), (0.001, "one"), (0.01, "one"), (1.0, "one"), (1.0, "length")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_argument(parser, "penalty_sweep.json")
    parser.add_argument("--settings", default=None, help="JSON list of [lambda, target] pairs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="demo seeds (data and weights)")
    args = parser.parse_args()
    settings = json.loads(args.settings) if args.settings else SETTINGS
    rows = []
    for weight, target in settings:
        for seed in args.seeds:
            config = DemoConfig(
                settings={"model": {"penalty_weight": weight, "penalty_target": target}}, plots=0, seed=seed
            )
            with tempfile.TemporaryDirectory() as output_dir:
                metrics = run_demo(output_dir, config, verbose=False)
            row = {
                "lambda": weight,
                "target": target,
                "seed": seed,
                "BLEU-4": metrics["BLEU-4"],
                "phrase_localization": metrics["phrase_localization"],
                "word_localization": metrics["word_localization"],
                "train_seconds": metrics["train_seconds"],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(
        f"\nmean over seeds {args.seeds}:\n| lambda | tau | BLEU-4 | phrase loc. | word loc. |\n|---|---|---|---|---|"
    )
    for weight, target in settings:
        group = [r for r in rows if r["lambda"] == weight and r["target"] == target]
        mean = {
            k: sum(r[k] for r in group) / len(group) for k in ("BLEU-4", "phrase_localization", "word_localization")
        }
        print(
            f"| {weight} | {target} | {mean['BLEU-4']:.1f} | {mean['phrase_localization']:.3f} "
            f"| {mean['word_localization']:.3f} |"
        )
    write_json_atomic(
        args.output, {"machine": machine(), "demo_config": dataclasses.asdict(DemoConfig()), "rows": rows}
    )


if __name__ == "__main__":
    main()
