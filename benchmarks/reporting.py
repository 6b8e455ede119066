"""What the Flickr8k benchmark scripts share: the dev metrics they tabulate, training a stage once,
the command line that reproduces a run, and the report written as JSON plus a Markdown table."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sat_tf.utils.atomic import write_json_atomic, write_text_atomic
from sat_tf.utils.cpu import describe_machine
from sat_tf.workflows import evaluate_captioner, resolve_run_config, train_captioner
from sat_tf.workflows.run_config import DataConfig, DecodingConfig

# The coco-caption metrics each table shows, in its column order.
SCORE_COLUMNS = ("BLEU-4", "METEOR", "CIDEr", "BLEU-1", "ROUGE-L")


def train_stage(run_dir: Path, recipe: str | None, overrides: dict, config: str | None = None) -> dict:
    """Trains the stage (settings: `recipe` <- the run config file `config` <- `overrides`) unless its
    run folder is finished (`model.keras`); returns its wall time (from `timing.json`, written here
    when this trains it; None when another command trained it)."""
    timing = run_dir / "timing.json"
    if (run_dir / "model.keras").is_file():
        return json.loads(timing.read_text()) if timing.is_file() else {"train_seconds": None}
    tick = time.perf_counter()
    result = train_captioner(resolve_run_config(recipe, config, overrides), run_dir)
    record = {
        "train_seconds": time.perf_counter() - tick,
        "tokens_per_second": result.tokens_per_second,
        "steps": result.steps,
    }
    write_json_atomic(timing, record)
    return record


def dev_scores(model_paths: list, data: DataConfig | None, decoding: DecodingConfig) -> dict:
    """The table's metrics of one model (or an ensemble of several) on `data`, with the wall time
    of decoding + scoring and the mean caption length in words."""
    tick = time.perf_counter()
    report = evaluate_captioner([str(p) for p in model_paths], data, decoding, verbose=False)
    words = [len(caption.split()) for caption in report["captions"].values()]
    return {
        **{k: report[k] for k in SCORE_COLUMNS},
        "decode_seconds": time.perf_counter() - tick,
        "mean_words": sum(words) / len(words),
    }


def median_ms(call, runs: int, warmup: int = 3) -> float:
    """Median wall time of `call()` in milliseconds over `runs` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        tick = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - tick))
    return statistics.median(times)


def machine() -> str:
    """The machine a figure was measured on: CPU model, core count and the flags speed depends on."""
    return describe_machine()


def command_line(script: str, args: argparse.Namespace, skip=("data", "output")) -> str:
    """`python benchmarks/<script> --flag value ...` for the arguments that were set (a switch,
    `store_true`, appears alone when on)."""
    flags = []
    for key, value in vars(args).items():
        if key in skip or value in (None, [], False):
            continue
        flag = f"--{key.replace('_', '-')}"
        flags.append(
            flag if value is True else f"{flag} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        )
    return " ".join([f"python benchmarks/{script}", *flags])


def write_report(output_prefix: str, report: dict, table: str) -> None:
    """Prints the table; writes `<prefix>.json` (the report) and `<prefix>.md` (the table)."""
    print(table)
    write_json_atomic(f"{output_prefix}.json", report)
    write_text_atomic(f"{output_prefix}.md", table + "\n")
