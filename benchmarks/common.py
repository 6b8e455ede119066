"""What the benchmark scripts share: where their results and the data are, the command line that
reproduces a run, the machine a figure was measured on, timing, training a stage once, the dev
metrics they tabulate, and the report (JSON plus a Markdown table).

Importing it loads no TensorFlow (the load generators of `benchmarks.serving.serve_load` use it in
many processes); the helpers that train or evaluate import the library when called.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sat_tf.utils.atomic import write_json_atomic, write_text_atomic
from sat_tf.utils.cpu import describe_machine

DEFAULT_DIR = "runs/benchmarks"  # outside the committed results: a rerun never overwrites them
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
COCO = DATA / "coco_mini"
# The coco-caption metrics each table shows, in its column order.
SCORE_COLUMNS = ("BLEU-4", "METEOR", "CIDEr", "BLEU-1", "ROUGE-L")


# ----- data ---------------------------------------------------------------------------------------
def coco_data():
    """coco_mini: 79 COCO val2017 photos with captions and instance masks."""
    from sat_tf.data.sources import DataConfig

    return DataConfig(captions=str(COCO / "captions_val2017.json"), image_dir=str(COCO / "val2017"))


def coco_dev():
    """The 100 dev photos of the COCO val2014 set (256 px, everyday scenes)."""
    from sat_tf.data.sources import DataConfig

    root = DATA / "coco_val2014"
    return DataConfig(
        captions=str(root / "coco_val2014.token.txt"),
        image_dir=str(root / "images"),
        split_list=str(root / "dev_images.txt"),
    )


def flickr_dev():
    """Flickr8k's 1,000 dev photos."""
    from sat_tf.data.sources import DataConfig

    root = DATA / "flickr8k"
    return DataConfig(
        captions=str(root / "Flickr8k.token.txt"),
        image_dir=str(root / "images"),
        split_list=str(root / "Flickr_8k.devImages.txt"),
    )


# ----- runs and reports ---------------------------------------------------------------------------
def add_output_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """`--output`, defaulting to runs/benchmarks/<name>; pass benchmarks/results/... to update the
    committed results (then run benchmarks/results_page.py)."""
    parser.add_argument(
        "--output",
        default=f"{DEFAULT_DIR}/{name}",
        help=f"results file; default under {DEFAULT_DIR}/ (benchmarks/results/... updates the committed ones)",
    )


def train_stage(run_dir: Path, recipe: str | None, overrides: dict, config: str | None = None) -> dict:
    """Trains the stage (settings: `recipe` <- the run config file `config` <- `overrides`) unless its
    run folder is finished (`model.keras`); returns its wall time (from `timing.json`, written here
    when this trains it; None when another command trained it)."""
    from sat_tf.workflows import resolve_run_config, train_captioner

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


def dev_scores(model_paths: list, data, decoding) -> dict:
    """The table's metrics of one model (or an ensemble of several) on `data` (a `DataConfig`),
    decoded with `decoding`, with the wall time of decoding + scoring and the mean caption length."""
    from sat_tf.workflows import evaluate_captioner

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


def command_line(module: str, args: argparse.Namespace, skip=("data", "output")) -> str:
    """`python -m <module> --flag value ...` for the arguments that were set (a switch,
    `store_true`, appears alone when on); a script passes its `__spec__.name`."""
    flags = []
    for key, value in vars(args).items():
        if key in skip or value in (None, [], False):
            continue
        flag = f"--{key.replace('_', '-')}"
        flags.append(
            flag if value is True else f"{flag} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        )
    return " ".join([f"python -m {module}", *flags])


def write_report(output_prefix: str, report: dict, table: str) -> None:
    """Prints the table; writes `<prefix>.json` (the report) and `<prefix>.md` (the table)."""
    print(table)
    write_json_atomic(f"{output_prefix}.json", report)
    write_text_atomic(f"{output_prefix}.md", table + "\n")
