"""`sat-tf caption` over a folder: photos per second and peak memory as the folder grows.

Runs the command as a user would (a fresh process, the default preset, a folder of photos, JSON
Lines output, no progress bar) on the first N photos of `../shared/data/coco_unlabeled/images`
(256 px COCO photos, copied by hard link into a temporary folder) for each N, and reports the wall
time, photos per second after start-up (the wall time minus that of a one-photo run) and the peak
resident memory of the process. Memory should stay flat as N grows: the command holds two batches
of photos, never the whole folder.

    python -m benchmarks.speed.caption_stream [--photos 32 128 512] [--output benchmarks/results/caption_stream]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA, add_output_argument, command_line, machine, write_report


def run_caption(folder: Path, output: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `sat-tf caption FOLDER --output OUTPUT` in a fresh process."""
    code = (
        "import resource, sys; from sat_tf.cli import main; "
        f"code = main(['caption', {str(folder)!r}, '--output', {str(output)!r}, '--no-progress']); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    tick = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    seconds = time.perf_counter() - tick
    if result.returncode != 0:
        raise SystemExit(f"sat-tf caption failed:\n{result.stderr[-2000:]}")
    peak_kb = int(next(line for line in result.stdout.splitlines() if line.startswith("PEAK")).split()[1])
    return seconds, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, nargs="+", default=[32, 128, 512])
    add_output_argument(parser, "caption_stream")
    args = parser.parse_args()
    source = DATA / "coco_unlabeled" / "images"
    names = sorted(p.name for p in source.iterdir())
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        baseline = None
        for count in [1, *args.photos]:
            folder = Path(scratch) / f"photos_{count}"
            folder.mkdir()
            for name in names[:count]:
                os.link(source / name, folder / name)
            output = Path(scratch) / f"captions_{count}.jsonl"
            seconds, peak_mb = run_caption(folder, output)
            written = sum(1 for _ in output.open())
            assert written == count, (written, count)
            if baseline is None:
                baseline = seconds
                continue
            rows.append(
                {
                    "photos": count,
                    "wall_seconds": seconds,
                    "photos_per_second_after_start": count / max(seconds - baseline, 1e-9),
                    "peak_rss_mb": peak_mb,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "one_photo_wall_seconds": baseline,
        "peak_rss_of_this_script_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }
    table = "\n".join(
        [
            f"`sat-tf caption FOLDER --output captions.jsonl` (default preset, beam 3); one photo: {baseline:.1f} s",
            "",
            "| photos | wall s | photos/s after start-up | peak memory MB |",
            "|---|---|---|---|",
            *[
                f"| {r['photos']} | {r['wall_seconds']:.1f} | {r['photos_per_second_after_start']:.1f} | "
                f"{r['peak_rss_mb']:.0f} |"
                for r in rows
            ],
        ]
    )
    write_report(args.output, report, table)


if __name__ == "__main__":
    main()
