"""How long a first caption takes: `sat-tf caption PHOTO` in a fresh process, as a new user runs it
(TensorFlow import, the preset's load, the ImageNet tagger, tracing the decoding loop, one photo),
beside a bare `import tensorflow` for scale. Medians over --runs; the first run of a machine
(cold disk cache) is also recorded.

    python -m benchmarks.speed.cold_caption [--photo PHOTO] [--model A [B ...]] \\
        [--output benchmarks/results/cold_caption.json]

Without --model, the default preset; with several, `sat-tf caption --model A B` (an ensemble).
"""

from __future__ import annotations

import argparse
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


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", help="a photo to caption (default: a generated 640x480 JPEG)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", nargs="+", help="models or presets for --model (default: the default preset)")
    add_output_argument(parser, "cold_caption.json")
    args = parser.parse_args()
    photo = args.photo
    if photo is None:
        photo = str(Path(args.output).with_suffix(".jpg"))
        Path(photo).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photo, quality=90)
    caption = [sys.executable, "-m", "sat_tf.cli", "caption", photo, *(["--model", *args.model] if args.model else [])]
    import_only = [sys.executable, "-c", "import tensorflow"]
    caption_seconds = [timed(caption) for _ in range(args.runs)]
    import_seconds = [timed(import_only) for _ in range(args.runs)]
    result = {
        "machine": common.machine(),
        "command": common.command_line(__spec__.name, args),
        "photo": photo if args.photo else "generated 640x480 JPEG",
        "model": args.model or "the default preset",
        "caption_seconds_first": caption_seconds[0],
        "caption_seconds_median": statistics.median(caption_seconds),
        "import_tensorflow_seconds_median": statistics.median(import_seconds),
        "runs": args.runs,
        "goal_seconds": 10.0,
    }
    print(result)
    write_json_atomic(args.output, result)


if __name__ == "__main__":
    main()
