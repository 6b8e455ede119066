"""What the Flickr8k benchmark scripts share: the command line that reproduces a run, and the
report written as JSON plus a Markdown table."""

from __future__ import annotations

import argparse
import os
import platform

from sat_tf.utils.atomic import write_json_atomic, write_text_atomic


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores"


def command_line(script: str, args: argparse.Namespace, skip=("data", "output")) -> str:
    """`python benchmarks/<script> --flag value ...` for the arguments that were set."""
    flags = [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in vars(args).items() if k not in skip and v not in (None, [])]
    return " ".join([f"python benchmarks/{script}", *flags])


def write_report(output_prefix: str, report: dict, table: str) -> None:
    """Prints the table; writes `<prefix>.json` (the report) and `<prefix>.md` (the table)."""
    print(table)
    write_json_atomic(f"{output_prefix}.json", report)
    write_text_atomic(f"{output_prefix}.md", table + "\n")
