"""How long a first caption takes: `sat-tf caption PHOTO` in a fresh process, as a new user runs it,
on both of its paths, with each run's wall time and peak resident memory (the process's own
`ru_maxrss`), beside a bare `import tensorflow` for scale. Medians over --runs.

- tensorflow: `SAT_TF_NO_FAST_PATH=1` (TensorFlow's import, the preset's load, the ImageNet tagger,
  tracing the decoding loop, one photo): every request the fast path cannot take runs this way;
- fast: the shipped preset's float32 TFLite pair in the cache, run by sat_tf_edge without
  TensorFlow (`sat_tf.cli.fast_caption`); the pair is built first by one TensorFlow run, into a
  cache of the benchmark's own (`runs/benchmarks/edge_cache`), as a user's first run builds it.

    python -m benchmarks.speed.cold_caption [--photo PHOTO] [--model A [B ...]] \\
        [--output benchmarks/results/cold_caption.json]

Without --model, the default preset; with several, `sat-tf caption --model A B` (an ensemble, the
TensorFlow path only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import common
from benchmarks.common import add_output_argument
from sat_tf.utils.atomic import write_json_atomic


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run of `command` in a fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {output}")
    return seconds, usage.ru_maxrss / 1024


def summary(runs: list[tuple[float, float]]) -> dict:
    return {
        "seconds_first": runs[0][0],
        "seconds_median": statistics.median(r[0] for r in runs),
        "peak_rss_mb_median": statistics.median(r[1] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", help="a photo to caption (default: a generated 640x480 JPEG)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", nargs="+", help="models or presets for --model (default: the default preset)")
    add_output_argument(parser, "cold_caption.json")
    args = parser.parse_args()
    photo = args.photo
    if photo is None:
        photo = str(Path(common.DEFAULT_DIR) / "cold_caption.jpg")
        Path(photo).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photo, quality=90)
    caption = [sys.executable, "-m", "sat_tf.cli", "caption", photo, *(["--model", *args.model] if args.model else [])]
    cache = str(Path(common.DEFAULT_DIR) / "edge_cache")
    slow_env = {**os.environ, "SAT_TF_NO_FAST_PATH": "1"}
    fast_env = {k: v for k, v in os.environ.items() if k != "SAT_TF_NO_FAST_PATH"} | {"SAT_TF_CACHE": cache}
    subprocess.run(caption, check=True, capture_output=True, env=fast_env)  # builds the pair when it can
    paths = {
        "tensorflow": summary([timed(caption, slow_env) for _ in range(args.runs)]),
        "fast": summary([timed(caption, fast_env) for _ in range(args.runs)]),
    }
    captions = {
        name: subprocess.run(caption, check=True, capture_output=True, text=True, env=env).stdout.strip()
        for name, env in (("tensorflow", slow_env), ("fast", fast_env))
    }
    import_only = [sys.executable, "-c", "import tensorflow"]
    result = {
        "machine": common.machine(),
        "command": common.command_line(__spec__.name, args),
        "photo": photo if args.photo else "generated 640x480 JPEG",
        "model": args.model or "the default preset",
        "paths": paths,
        "same_line_on_both_paths": captions["tensorflow"] == captions["fast"],
        "lines": captions,
        "import_tensorflow": summary([timed(import_only, slow_env) for _ in range(args.runs)]),
        "runs": args.runs,
        "goal": {"seconds": 1.0, "peak_rss_mb": 300},
    }
    print(result)
    write_json_atomic(args.output, result)


if __name__ == "__main__":
    main()
