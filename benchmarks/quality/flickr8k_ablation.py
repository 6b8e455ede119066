"""What each lever buys on Flickr8k dev: cross-entropy baseline -> + fine-tuned top blocks ->
+ self-critical training -> + ensembles, each at beam 3 and 5, with the wall time of every stage.

Every stage is one library workflow, exactly what the README's `sat-tf train` commands run:

    1. baseline      sat-tf train --recipe flickr8k-lite0                (frozen Lite0 features)
    2. fine-tuned    sat-tf train --recipe flickr8k-lite0-ft             (last stage + head trained
                                                                          from a 7x7x192 cache)
    3. + SCST        sat-tf train --recipe flickr8k-lite0-scst --scst-init-from <2>/model.keras
    4. ensembles     sat-tf evaluate --model <a> <b> ...

A stage whose run folder already holds a finished run (`model.keras`) is not trained again (its
wall time is then read from `timing.json` if this script wrote one, else reported as unknown), so
the script can score runs made by the README commands. Scoring uses coco-caption (PTB + METEOR).

    python -m benchmarks.quality.flickr8k_ablation [--data ../shared/data/flickr8k] [--work runs]
        [--baseline flickr8k] [--fine-tuned flickr8k_ft] [--scst flickr8k_ft_scst] [--scst-epochs 5]
        [--beams 3 5] [--ensemble flickr8k_ft_scst+flickr8k_scst_last ...]

Needs the Flickr8k folder described in ../shared/data/README.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.common import DATA, add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import SCORE_COLUMNS as COLUMNS  # noqa: E402
from benchmarks.common import command_line, dev_scores, machine, train_stage, write_report  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data  # noqa: E402


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA / "flickr8k"))
    parser.add_argument("--work", default="runs", help="folder of the run folders")
    parser.add_argument("--baseline", default="flickr8k")
    parser.add_argument("--fine-tuned", default="flickr8k_ft")
    parser.add_argument("--scst", default="flickr8k_ft_scst")
    parser.add_argument("--scst-epochs", type=int, default=5)
    parser.add_argument("--precision", default="float32", help="of the cross-entropy stages (the table's: float32)")
    parser.add_argument("--beams", type=int, nargs="+", default=[3, 5])
    parser.add_argument(
        "--ensemble",
        nargs="*",
        default=[],
        metavar="RUN+RUN[+RUN]",
        help="ensembles to score, each a '+'-joined list of run folders under --work",
    )
    add_output_argument(parser, "flickr8k_ablation")
    return parser.parse_args()


def _score(model_dirs: list[Path], beam: int) -> dict:
    """Dev metrics at this beam of one run (its selected model) or an ensemble, from the first
    run's dev split (its feature cache when every member reads it, else the images)."""
    return dev_scores(model_dirs, default_evaluation_data(model_dirs[0]), DecodingConfig(beam_size=beam))


def main() -> None:
    args = _parse_args()
    work = Path(args.work)
    data = {"data": {"data_root": args.data}, "training": {"precision": args.precision}}
    baseline, fine_tuned, scst = work / args.baseline, work / args.fine_tuned, work / args.scst
    stages = {
        "cross-entropy, frozen Lite0 features": (baseline, train_stage(baseline, "flickr8k-lite0", data)),
        "+ fine-tuned top blocks (last stage + head)": (fine_tuned, train_stage(fine_tuned, "flickr8k-lite0-ft", data)),
    }
    scst_overrides = {
        "scst": {"init_from": str(fine_tuned / "model.keras")},
        "training": {"epochs": args.scst_epochs},
        "data": {"data_root": args.data, "feature_cache": str(fine_tuned / "features" / "train")},
        "validation": {"feature_cache": str(fine_tuned / "features" / "validation")},
    }
    stages["+ self-critical (CIDEr-D), from the last fine-tuned epoch"] = (
        scst,
        train_stage(scst, "flickr8k-lite0-scst", scst_overrides),
    )
    rows = {}
    for name, (run_dir, timing) in stages.items():
        for beam in args.beams:
            rows[f"{name}, beam {beam}"] = {**_score([run_dir], beam), "train_seconds": timing.get("train_seconds")}
    for ensemble in args.ensemble:
        members = [work / name for name in ensemble.split("+")]
        for beam in args.beams:
            rows[f"ensemble {' + '.join(m.name for m in members)}, beam {beam}"] = _score(members, beam)
    report = {
        "machine": machine(),
        "split": "Flickr8k dev (1,000 images)",
        "command": command_line(__spec__.name, args),
        "rows": rows,
    }
    lines = ["| stage | " + " | ".join(COLUMNS) + " | training | decoding |", "|---|" + "---|" * (len(COLUMNS) + 2)]
    for name, scores in rows.items():
        train_seconds = scores.get("train_seconds")
        trained = f"{train_seconds / 60:.1f} min" if train_seconds else "–"
        lines.append(
            f"| {name} | "
            + " | ".join(f"{scores[c]:.1f}" for c in COLUMNS)
            + f" | {trained} | {scores['decode_seconds']:.0f} s |"
        )
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
