"""`sat-tf caption` over a folder: photos per second and peak memory as the folder grows, on each
of the command's paths.

Runs the command as a user would (a fresh process, the default preset, a folder of photos, JSON
Lines output, no progress bar) on the first N photos of `../shared/data/coco_unlabeled/images`
(256 px COCO photos, linked into a temporary folder; past its 3,000 photos they repeat under new
names) for each N, and reports the wall time, photos per second after start-up (the wall time minus
that of a one-photo run) and the peak resident memory: of the process, and for Beam of its largest
worker process too. Memory should stay flat as N grows. The paths (`--paths`):

- tensorflow: `SAT_TF_NO_FAST_PATH=1`, the library's batched decoding;
- fast: the preset's float32 TFLite pair without TensorFlow (`sat_tf.cli.fast_caption`), one photo
  at a time, past its usual limit of 128 photos (`SAT_TF_FAST_PATH_MOST_PHOTOS`), to measure its rate;
- beam: `--runner DirectRunner` with 2 worker processes (`sat_tf_edge.beam`).

To compare with an earlier version on the same machine, `--source DIR` runs the command from
another source tree (`git archive COMMIT | tar -x -C DIR`); `--photos-as-arguments` passes the
photo files instead of their folder (versions before folders were accepted; their `--output` is
one JSON object with its list of captions).

    python -m benchmarks.speed.caption_stream [--photos 32 128 512] [--paths tensorflow fast beam] \
        [--source DIR [--photos-as-arguments]] [--output benchmarks/results/caption_stream]
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

BEAM = ["--runner", "DirectRunner", "--pipeline-option=--direct_num_workers=2"]
BEAM += ["--pipeline-option=--direct_running_mode=multi_processing"]
CACHE = Path("runs/benchmarks/edge_cache")  # the fast path's pair, built by its first run


def run_caption(
    folder: Path, output: Path, path: str = "tensorflow", source: Path | None = None, photos_as_arguments: bool = False
) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB of the process, of its largest child) of
    `sat-tf caption FOLDER --output OUTPUT` on one of its paths, in a fresh process (with `source`:
    that source tree's sat_tf)."""
    extra = BEAM if path == "beam" else []
    photos = sorted(str(p) for p in folder.iterdir()) if photos_as_arguments else [str(folder), "--no-progress"]
    code = (
        "import resource, sys; from sat_tf.cli import main; "
        f"code = main(['caption', *{photos!r}, '--output', {str(output)!r}, *{extra!r}]); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    env = {k: v for k, v in os.environ.items() if k != "SAT_TF_NO_FAST_PATH"} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    env |= {"SAT_TF_NO_FAST_PATH": "1"} if path == "tensorflow" else {"SAT_TF_CACHE": str(CACHE.resolve())}
    env |= {"SAT_TF_FAST_PATH_MOST_PHOTOS": "1000000"} if path == "fast" else {}  # the pair's own rate
    env |= {"PYTHONPATH": str(source.resolve())} if source else {}
    tick = time.perf_counter()
    # `python -c` imports from its working folder first: run another tree's code from that tree.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=source)
    seconds = time.perf_counter() - tick
    if result.returncode != 0:
        raise SystemExit(f"sat-tf caption failed:\n{result.stderr[-2000:]}")
    peak = next(line for line in result.stdout.splitlines() if line.startswith("PEAK")).split()
    return seconds, int(peak[1]) / 1024, int(peak[2]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--paths", nargs="+", default=["tensorflow"], choices=["tensorflow", "fast", "beam"])
    parser.add_argument("--source", type=Path, help="run sat_tf from this source tree (an earlier version)")
    parser.add_argument("--photos-as-arguments", action="store_true", help="photo files, not their folder")
    add_output_argument(parser, "caption_stream")
    args = parser.parse_args()
    source = DATA / "coco_unlabeled" / "images"
    names = sorted(p.name for p in source.iterdir())
    rows, baselines = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for count in [1, *args.photos]:
            folder = Path(scratch) / f"photos_{count}"
            folder.mkdir()
            for index in range(count):
                name = names[index % len(names)]
                os.link(source / name, folder / f"{index // len(names)}_{name}")
        if "fast" in args.paths:  # the first fast-path run builds the pair (not timed)
            run_caption(Path(scratch) / "photos_1", Path(scratch) / "warm.jsonl", "fast")
        for path in args.paths:
            for count in [1, *args.photos]:
                output = Path(scratch) / f"captions_{path}_{count}.jsonl"
                seconds, peak_mb, child_mb = run_caption(
                    Path(scratch) / f"photos_{count}", output, path, args.source, args.photos_as_arguments
                )
                written = (
                    len(json.loads(output.read_text())["captions"])
                    if args.photos_as_arguments
                    else len(output.read_text().splitlines())
                )
                assert written == count, (written, count)
                if count == 1:
                    baselines[path] = seconds
                    continue
                rows.append(
                    {
                        "path": path,
                        "photos": count,
                        "wall_seconds": seconds,
                        "photos_per_second_after_start": count / max(seconds - baselines[path], 1e-9),
                        "peak_rss_mb": peak_mb,
                        "largest_child_peak_rss_mb": child_mb,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "source": str(args.source) if args.source else "this checkout",
        "one_photo_wall_seconds": baselines,
        "peak_rss_of_this_script_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }
    table = "\n".join(
        [
            "`sat-tf caption FOLDER --output captions.jsonl` (default preset, beam 3); one photo: "
            + ", ".join(f"{path} {seconds:.1f} s" for path, seconds in baselines.items()),
            "",
            "| path | photos | wall s | photos/s after start-up | peak memory MB (its largest child process) |",
            "|---|---|---|---|---|",
            *[
                f"| {r['path']} | {r['photos']} | {r['wall_seconds']:.1f} | {r['photos_per_second_after_start']:.1f} | "
                f"{r['peak_rss_mb']:.0f} ({r['largest_child_peak_rss_mb']:.0f}) |"
                for r in rows
            ],
        ]
    )
    write_report(args.output, report, table)


if __name__ == "__main__":
    main()
