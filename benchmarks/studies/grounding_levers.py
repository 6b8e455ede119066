"""Which training levers make attention land on the object? From one trained cross-entropy model
(`--start`, a run folder with its feature caches), each lever fine-tunes for the same budget
(`--epochs`, constant learning rate), and every result is scored on Flickr8k dev (beam 3, coco-
caption) and on where the attention of object words lands on the COCO photos
(`sat_tf.evaluation.grounding`: lift over the object's area share, peak on the object, spread).

Levers (run folders under --work; a finished one is scored, not trained again):

    control    sat-tf train --recipe flickr8k-lite0-ft --init-from START/model.keras --epochs E
                   --learning-rate LR --schedule constant --warmup-steps 0   (the extra epochs alone)
    penalty    ... --penalty-weight 1         (the paper's doubly stochastic penalty, lambda = 1)
    hard       ... --attention hard           (the paper's REINFORCE hard attention; at inference
                                               the expectation, so its maps are comparable)
    scst       sat-tf train --recipe flickr8k-lite0-scst --scst-init-from START/model.keras --epochs E
                                              (self-critical CIDEr-D)

`--also` scores finished models as they are (for example a 14x14 run before and after SCST).

    python -m benchmarks.studies.grounding_levers --start runs/ft224 --work runs/levers \\
        [--also runs/ft448/model.keras runs/ft448_scst] [--output benchmarks/results/grounding_levers]

Needs the Flickr8k folder described in ../shared/data/README.md and the COCO photos' masks.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.common import DATA, add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import command_line, machine, train_stage, write_report  # noqa: E402
from benchmarks.studies.grid_comparison import coco_grounding  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data, evaluate_captioner  # noqa: E402
from sat_tf.workflows.models import load_captioners  # noqa: E402

SCORES = ("BLEU-4", "METEOR", "CIDEr")
# lever -> (recipe, model settings)
LEVERS = {
    "control": ("flickr8k-lite0-ft", {}),
    "penalty": ("flickr8k-lite0-ft", {"penalty_weight": 1.0}),
    "hard": ("flickr8k-lite0-ft", {"attention": "hard"}),
    "scst": ("flickr8k-lite0-scst", {}),
}


def _overrides(lever: str, start: Path, data_root: str, epochs: int, learning_rate: float) -> dict:
    recipe, model_settings = LEVERS[lever]
    image_size = json.loads((start / "run_config.json").read_text())["model"]["image_size"]
    caches = {
        "data": {"data_root": data_root, "feature_cache": str(start / "features" / "train")},
        "validation": {"feature_cache": str(start / "features" / "validation")},
    }
    if recipe.endswith("scst"):
        scst = {"scst": {"init_from": str(start / "model.keras")}, "training": {"epochs": epochs}}
        return {**caches, **scst, "model": {"image_size": image_size}}
    training = {
        "init_from": str(start / "model.keras"),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "schedule": "constant",
        "warmup_steps": 0,
    }
    return {**caches, "model": {"image_size": image_size, **model_settings}, "training": training}


def score(model_path: Path | list, run_dir: Path, beam_size: int, kept: Path | None = None) -> dict:
    """Dev scores (the dev split of `run_dir`'s run) and COCO grounding of a model, or of an ensemble
    given as a list; kept beside the run (or at `kept`), so a rerun scores it once."""
    kept = kept or run_dir / f"levers_beam{beam_size}.json"
    if kept.is_file():
        return json.loads(kept.read_text())
    decoding = DecodingConfig(beam_size=beam_size)
    paths = [str(p) for p in model_path] if isinstance(model_path, list) else [str(model_path)]
    report = evaluate_captioner(paths, default_evaluation_data(run_dir), decoding, verbose=False)
    model = load_captioners(paths)
    scores = {
        "grid": "x".join(map(str, model.members()[0].feature_grid)),
        **{key: report[key] for key in SCORES},
        **coco_grounding(model, decoding),
    }
    write_json_atomic(kept, scores)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", required=True, help="a cross-entropy run folder (model.keras, features/)")
    parser.add_argument("--work", default="runs/levers")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--also", nargs="*", default=[], help="finished models (run folders or .keras) to score")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--data", default=str(DATA / "flickr8k"))
    add_output_argument(parser, "grounding_levers")
    args = parser.parse_args()
    start, work = Path(args.start), Path(args.work)
    rows = {f"start ({start})": score(start / "model.keras", start, args.beam_size)}
    for lever in args.levers:
        recipe = LEVERS[lever][0]
        overrides = _overrides(lever, start, args.data, args.epochs, args.learning_rate)
        timing = train_stage(work / lever, recipe, overrides)
        rows[lever] = {
            **score(work / lever / "model.keras", work / lever, args.beam_size),
            "train_seconds": timing.get("train_seconds"),
        }
        print(lever, rows[lever], flush=True)
    for finished in map(Path, args.also):
        run_dir = finished if finished.is_dir() else finished.parent
        model_path = finished / "model.keras" if finished.is_dir() else finished
        rows[str(finished)] = score(model_path, run_dir, args.beam_size)
    report = {
        "machine": machine(),
        "command": command_line(__spec__.name, args),
        "start": str(start),
        "epochs": args.epochs,
        "rows": rows,
    }
    lines = [
        "| model | grid | BLEU-4 | METEOR | CIDEr | COCO object words | lift | peak on the object | spread (cells) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['grid']} | {r['BLEU-4']:.1f} | {r['METEOR']:.1f} | {r['CIDEr']:.1f} | {r['object_words']} | "
        f"{r['lift']:.2f}x | {100 * r['peak_on_object']:.0f}% | {r['perplexity']:.1f} |"
        for name, r in rows.items()
    ]
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
