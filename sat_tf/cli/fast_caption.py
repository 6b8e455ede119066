"""`sat-tf caption`'s fast path: a shipped preset's float32 TFLite pair run by `sat_tf_edge`
(LiteRT, numpy, Pillow), without starting TensorFlow.

It takes the request when it needs nothing only TensorFlow has: photos, folders and `--list`
files, `--output` (JSON Lines with `--resume`, or JSON), `--k-best`, `--hide-not-sure`,
`--skip-bad`, `--no-progress`, `--photos-per-batch`, `--workers`, and `--model` naming a shipped
preset whose captions need no tag guidance (the default does), for up to `FAST_PATH_MOST_PHOTOS`
photos (past that, TensorFlow's batched decoding is faster). Anything else (`--attention-plot`,
`--tags`, decoding flags, `--recipe`, `--config`, other models) goes the TensorFlow way, which also
builds the pair the first time (`sat_tf.workflows.fast_path`). `SAT_TF_NO_FAST_PATH=1` turns it
off. What it prints and writes is what the TensorFlow path prints and writes, line for line and
field for field (`tests/test_fast_caption.py`).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sat_tf.cli.common import DEFAULT_PRESET
from sat_tf.utils.edge_cache import preset_pair_dir, shipped_preset_config

# Past this many photos the TensorFlow path wins: it starts in ~9 s but captions batches at ~17
# photos/s, the pair one photo at a time at ~9 (2 cores; benchmarks/results/caption_stream.md), so
# the two meet near 130 photos. `SAT_TF_FAST_PATH_MOST_PHOTOS` moves the line (the benchmark does).
FAST_PATH_MOST_PHOTOS = int(os.environ.get("SAT_TF_FAST_PATH_MOST_PHOTOS", "128"))


def fast_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat-tf caption", add_help=False)
    parser.add_argument("images", nargs="*")
    parser.add_argument("--list", action="append", default=[])
    parser.add_argument("--model", nargs="+")
    parser.add_argument("--k-best", type=int, default=0)
    parser.add_argument("--skip-bad", action="store_true")
    parser.add_argument("--hide-not-sure", action="store_true")
    parser.add_argument("--output")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--photos-per-batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def fast_arguments(argv: list[str]) -> argparse.Namespace | None:
    """The request as the fast path reads it, or None when it needs the TensorFlow path."""
    if not argv or argv[0] != "caption" or os.environ.get("SAT_TF_NO_FAST_PATH", "") not in ("", "0"):
        return None
    try:
        args, unknown = fast_parser().parse_known_args(argv[1:])
    except SystemExit:  # a malformed value: the full parser says what is wrong
        return None
    if unknown or "--" in argv:
        return None
    model = args.model or [DEFAULT_PRESET]
    config = shipped_preset_config(model[0]) if len(model) == 1 else None
    if config is None or config.get("decoding", {}).get("caption_tag_guidance", "auto") != "off":
        return None  # not a shipped preset, an ensemble, or captions guided by tags (TensorFlow's)
    args.preset = model[0]
    return args


def pair_ready(args: argparse.Namespace) -> Path | None:
    folder = preset_pair_dir(args.preset)
    return folder if folder is not None and (folder / "sat_tf_edge.json").is_file() else None


def run(args: argparse.Namespace, folder: Path) -> int | None:
    """Captions the photos with the pair in `folder`; prints and writes as the TensorFlow path.
    None (nothing done) for more than `FAST_PATH_MOST_PHOTOS` photos: the TensorFlow path is faster."""
    from sat_tf.cli.caption import caption_line, photos_of, progress_bar
    from sat_tf.errors import ConfigError, SatTfError
    from sat_tf.utils.atomic import write_json_atomic
    from sat_tf.utils.json_lines import JsonLinesOutput
    from sat_tf_edge import EdgeCaptioner
    from sat_tf_edge.images import ImageDecodeError, load_image

    try:
        photos = photos_of(args)
        if len(photos) > FAST_PATH_MOST_PHOTOS:
            return None
        streaming = bool(args.output) and args.output.endswith(".jsonl")
        if args.resume and not streaming:
            raise ConfigError("--resume continues a .jsonl --output; name one")
        output = JsonLinesOutput(args.output, resume=args.resume) if streaming else None
    except SatTfError as exc:
        print(f"sat-tf caption: error: {exc}", file=sys.stderr)
        return 2
    todo = [photo for photo in photos if output is None or photo not in output.done]
    must_read = frozenset() if args.skip_bad else frozenset(p for p in args.images if not os.path.isdir(p))
    captioner = EdgeCaptioner(folder)

    def read(path: str):
        try:
            return path, load_image(path, captioner.image_size)[None], None
        except ImageDecodeError as exc:
            return path, None, str(exc)

    records, skipped = [], []
    with progress_bar(len(todo), disable=args.no_progress) as progress, ThreadPoolExecutor(args.workers) as pool:
        try:
            for path, pixels, error in pool.map(read, todo):
                if error is not None:
                    if path in must_read:
                        print(f"sat-tf caption: error: {error}", file=sys.stderr)
                        return 2
                    skipped.append(error)
                    if output is not None:
                        output.write({"image": path, "error": error})
                else:
                    record = captioner.caption(pixels).record(path, captioner.vocabulary)
                    print(caption_line(record, hide_not_sure=args.hide_not_sure))
                    for rank, candidate in enumerate(record["candidates"][: args.k_best], start=1):
                        print(f"  {rank}. {candidate}")
                    if output is None:
                        records.append(record)
                    else:
                        output.write(record)
                progress.update(1)
                if output is not None and progress.n % args.photos_per_batch == 0:
                    output.sync()  # as the TensorFlow path, once a batch
        finally:
            if output is not None:
                output.close()
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:3])}", file=sys.stderr)
    if todo and len(skipped) == len(todo):
        print(f"sat-tf caption: error: no readable images: {skipped[0]}", file=sys.stderr)
        return 2
    if args.output and not streaming:
        write_json_atomic(args.output, {"captions": records, "skipped": skipped})
    return 0
