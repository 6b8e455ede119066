"""Op-level profile of the paper-size training step (the `train_throughput.py` shape): the
TensorFlow profiler traces a few steps and xprof's framework op statistics tell where the time
goes, by op type and by op. Needs `pip install xprof` (not a sat_tf dependency).

Times are thread times summed over the CPU's threads ("IDLE" is a thread waiting for work), so
per step they add up to about (cores x wall time).

    python -m benchmarks.speed.profile_train_step [--precision float32] [--steps 5] \\
        [--output benchmarks/results/profile_train_step.json]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import tempfile

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from benchmarks.speed import train_throughput as throughput  # noqa: E402
from benchmarks.common import machine  # noqa: E402

from sat_tf.training import TrainConfig, build_train_step  # noqa: E402
from sat_tf.training.precision import dtype_policy  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402


def trace_steps(log_dir: str, precision: str, steps: int) -> None:
    batch = throughput._feature_batch(np.random.default_rng(0), 64, [13] * 64)
    with dtype_policy(precision):
        model = throughput._paper_size_model()
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, tf.distribute.get_strategy(), TrainConfig(learning_rate=1e-4))
    for _ in range(3):  # tracing and warm-up, outside the profile
        step(batch)["loss"].numpy()
    tf.profiler.experimental.start(log_dir)
    for _ in range(steps):
        step(batch)["loss"].numpy()
    tf.profiler.experimental.stop()


def op_statistics(log_dir: str) -> list[dict]:
    """xprof's framework_op_stats table as rows {type, operation, occurrences, self_us}."""
    from xprof.convert import raw_to_tool_data

    planes = glob.glob(os.path.join(log_dir, "plugins", "profile", "*", "*.xplane.pb"))
    data, _ = raw_to_tool_data.xspace_to_tool_data(planes, "framework_op_stats", {})
    table = json.loads(data if isinstance(data, str) else data.decode())[0]
    columns = [column["id"] for column in table["cols"]]
    rows = [dict(zip(columns, (cell["v"] if cell else None for cell in row["c"]))) for row in table["rows"]]
    return [
        {
            "type": r["type"],
            "operation": r["operation"],
            "occurrences": r["occurrences"],
            "self_us": r["total_self_time"],
        }
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=5)
    add_output_argument(parser, "profile_train_step.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as log_dir:
        trace_steps(log_dir, args.precision, args.steps)
        rows = op_statistics(log_dir)
    total = sum(r["self_us"] for r in rows)
    by_type = collections.defaultdict(lambda: {"ops_per_step": 0.0, "thread_ms_per_step": 0.0})
    for row in rows:
        by_type[row["type"]]["ops_per_step"] += row["occurrences"] / args.steps
        by_type[row["type"]]["thread_ms_per_step"] += row["self_us"] / args.steps / 1000
    ranked = sorted(by_type.items(), key=lambda item: -item[1]["thread_ms_per_step"])
    print(f"thread time per step: {total / args.steps / 1000:.0f} ms")
    for name, entry in ranked[:15]:
        print(
            f"{name:36s} {entry['ops_per_step']:6.0f} ops/step {entry['thread_ms_per_step']:7.1f} ms/step "
            f"{100 * entry['thread_ms_per_step'] * args.steps * 1000 / total:5.1f}%"
        )
    top_ops = sorted(rows, key=lambda r: -r["self_us"])[:25]
    report = {
        "machine": machine(),
        "precision": args.precision,
        "steps": args.steps,
        "command": f"python -m benchmarks.speed.profile_train_step --precision {args.precision}",
        "thread_ms_per_step": total / args.steps / 1000,
        "by_type": {name: entry for name, entry in ranked},
        "top_ops": [{**r, "thread_ms_per_step": r["self_us"] / args.steps / 1000} for r in top_ops],
    }
    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
