"""`sat-tf`: command-line glue over `sat_tf.workflows`. One module per command (`COMMANDS`), each
holding its flags (`add_arguments`) beside its handler (`run`), as pip's commands do; this module
only builds the parser from them and runs the chosen one. Each command parses flags into settings
and makes one library call."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's Python-side logging

from sat_tf.cli import (  # noqa: E402  (after the logging switch: the commands import TensorFlow lazily)
    calibrate,
    caption,
    demo,
    distill,
    evaluate,
    export,
    extract,
    fast_caption,
    serve,
    train,
)
from sat_tf.cli.common import DEFAULT_PRESET, check_image_files, photos_before_any_option  # noqa: E402

COMMANDS = (demo, train, extract, caption, evaluate, calibrate, distill, export, serve)

__all__ = ["COMMANDS", "DEFAULT_PRESET", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's start-up lines and the metric tools' output"
    )
    parser = argparse.ArgumentParser(
        prog="sat-tf", description=__doc__.split(". One module")[0] + ".", parents=[common]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.NAME, help=command.HELP, description=command.HELP, parents=[common])
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sat_tf.utils.quiet import native_stderr_silenced

    argv = sys.argv[1:] if argv is None else list(argv)
    early = photos_before_any_option(argv)
    if early:  # a missing photo is said in a moment, before TensorFlow and the model load
        from sat_tf.errors import SatTfError

        try:
            check_image_files(early, skip_bad="--skip-bad" in argv, more_may_follow=True)
        except SatTfError as exc:
            print(f"sat-tf caption: error: {exc}", file=sys.stderr)
            return 2
    # TensorFlow's C++ start-up lines (CUDA probing, oneDNN) and the metric tools' Java output go
    # to fd 2, below Python; drop them unless --verbose, keeping Python's own messages.
    fast = fast_caption.fast_arguments(argv)
    if fast is not None and (pair := fast_caption.pair_ready(fast)) is not None:
        code = fast_caption.run(fast, pair)  # no TensorFlow: a shipped preset's TFLite pair
        if code is not None:
            return code
    with native_stderr_silenced("--verbose" not in argv):
        if "--verbose" not in argv:
            import logging

            logging.getLogger("tensorflow").setLevel(logging.ERROR)
        args = build_parser().parse_args(argv)
        args.build_fast_path = fast.preset if fast is not None else None  # for the next run
        return _run(args)


def _run(args) -> int:
    from sat_tf.errors import SatTfError

    try:
        args.handler(args)
    except SatTfError as exc:
        print(f"sat-tf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sat-tf {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
