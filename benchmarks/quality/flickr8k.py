"""The Flickr8k recipe end to end through the library's workflows, i.e. exactly what
`sat-tf train --recipe flickr8k-lite0` + `sat-tf evaluate` run: extract features, train, select on
dev BLEU-4, decode dev with greedy and beam search, score with coco-caption, and write a results
table with the paper's Flickr8k rows beside ours.

    python -m benchmarks.quality.flickr8k [--data ../shared/data/flickr8k] [--work runs/flickr8k]
                                  [--attention soft hard] [--epochs 6]

Needs the Flickr8k folder described in ../shared/data/README.md (images + token file + splits).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.common import DATA, add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import command_line, machine, write_report  # noqa: E402
from sat_tf.data.feature_cache import FeatureCache  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.training import CaptioningTask  # noqa: E402
from sat_tf.workflows import evaluate_captioner, load_captioner, resolve_run_config, train_captioner  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data  # noqa: E402

PAPER_ROWS = {
    "Xu et al. 2015, soft attention": {"BLEU-1": 67.0, "BLEU-2": 44.8, "BLEU-3": 29.9, "BLEU-4": 19.5, "METEOR": 18.93},
    "Xu et al. 2015, hard attention": {"BLEU-1": 67.0, "BLEU-2": 45.7, "BLEU-3": 31.4, "BLEU-4": 21.3, "METEOR": 20.30},
}
COLUMNS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA / "flickr8k"))
    parser.add_argument("--work", default="runs/flickr8k")
    parser.add_argument("--recipe", default="flickr8k-lite0")
    parser.add_argument(
        "--attention",
        nargs="+",
        default=["soft"],
        choices=["soft", "hard"],
        help="attention modes to train, each under the same budget",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--max-steps", type=int, default=None, help="stop training early (smoke runs)")
    parser.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=JSON",
        help="any other recipe setting, e.g. --set model.penalty_weight=1",
    )
    parser.add_argument("--beam-size", type=int, default=3)
    add_output_argument(parser, "flickr8k")
    return parser.parse_args()


def _overrides(args, mode: str, work: Path) -> dict:
    overrides = {
        "data": {"data_root": args.data, "feature_cache": str(work / "features" / "train")},
        "validation": {"feature_cache": str(work / "features" / "validation")},
        "model": {"attention": mode},
        "training": {},
    }
    for name, value in (
        ("epochs", args.epochs),
        ("max_steps", args.max_steps),
        ("early_stopping_patience", args.patience),
    ):
        if value is not None:
            overrides["training"][name] = value
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        overrides.setdefault(section, {})[name] = json.loads(value)
    return overrides


def _hard_gradient_variance(model, config, repeats: int = 16) -> dict:
    """Variance of the hard-attention gradient estimate over repeated location samples on one batch
    of 64 training captions, with the model's moving-average baseline and with b = 0."""
    import tensorflow as tf

    from sat_tf.data.pipeline import encode_captions
    from sat_tf.data.sources import load_captions

    data = load_captions(config.data, model.encoder.image_size)
    captions = encode_captions(
        data.records[:64],
        model.tokenizer,
        data.image_index[:64],
        drop_long=True,
        max_words=config.data.max_caption_words,
    )
    features = FeatureCache(config.data.feature_cache).gather(captions.image_index)
    batch = {
        "features": tf.constant(features),
        "tokens": tf.constant(captions.tokens[:, : int(captions.lengths.max())]),
    }
    variables = model.decoder.trainable_variables
    model.decoder.expectation_probability = 0.0  # always sample
    task = CaptioningTask(model)

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            loss, _ = task.compute_caption_loss(batch, training=True)
        return tf.concat([tf.reshape(tf.convert_to_tensor(g), [-1]) for g in tape.gradient(loss, variables)], 0)

    trained_baseline = float(model.reward_baseline.numpy())
    result = {"trained_baseline": trained_baseline}
    for name, baseline in (("with_baseline", trained_baseline), ("without_baseline", 0.0)):
        samples = []
        for _ in range(repeats):
            model.reward_baseline.assign(baseline)  # the loss updates b; hold it fixed here
            samples.append(gradient().numpy())
        result[f"total_variance_{name}"] = float(np.stack(samples).var(axis=0, ddof=1).sum())
    model.reward_baseline.assign(trained_baseline)
    model.decoder.expectation_probability = 0.5
    return result


def _score(run_dir: Path, decoding: DecodingConfig, hard_inference: str | None = None) -> dict:
    """Dev metrics of the run's selected model (greedy or beam), decoding from the dev feature cache."""
    tick = time.perf_counter()
    model_path = run_dir / "best_model.keras"
    if not model_path.is_file():  # stopped (--max-steps) before the first validation
        model_path = run_dir / "model.keras"
    if hard_inference is not None:  # score a test-time option of a hard model: save it as its own file
        model = load_captioner(model_path)
        model.decoder.hard_inference = hard_inference
        model_path = run_dir / f"scored_{hard_inference}.keras"
        model.save(model_path)
    report = evaluate_captioner([str(model_path)], default_evaluation_data(run_dir), decoding, verbose=False)
    scores = {k: v for k, v in report.items() if k in COLUMNS or k == "tokenization"}
    scores["decode_seconds"] = time.perf_counter() - tick
    return scores


def main() -> None:
    args = _parse_args()
    started = time.perf_counter()
    work = Path(args.work)
    rows, runs = dict(PAPER_ROWS), {}
    greedy, beam = DecodingConfig(beam_size=1), DecodingConfig(beam_size=args.beam_size)
    for mode in args.attention:
        run_dir = work / mode
        config = resolve_run_config(args.recipe, overrides=_overrides(args, mode, work))
        tick = time.perf_counter()
        result = train_captioner(config, run_dir)
        run = {
            "train_seconds": time.perf_counter() - tick,
            "train_tokens_per_second": result.tokens_per_second,
            "train_steps": result.steps,
            "validation": [h for h in result.history if "validation_score" in h],
            "config": config.to_dict(),
        }
        if (run_dir / "best.json").is_file():
            run["best"] = json.loads((run_dir / "best.json").read_text())
        inference_modes = ["argmax", "sample", "expectation"] if mode == "hard" else [None]
        greedy_by_mode = {inference: _score(run_dir, greedy, inference) for inference in inference_modes}
        # Hard attention at test time: the option with the best greedy dev BLEU-4 (README: hard attention).
        chosen = max(greedy_by_mode, key=lambda m: greedy_by_mode[m]["BLEU-4"])
        for inference, scores in greedy_by_mode.items():
            rows[f"sat_tf {mode}, greedy" + (f" ({inference})" if inference else "")] = scores
        if chosen:
            run["hard_inference_chosen"] = chosen
            best = load_captioner(run_dir / f"scored_{chosen}.keras")
            run["gradient_variance"] = _hard_gradient_variance(best, config)
        rows[f"sat_tf {mode}, beam {args.beam_size}" + (f" ({chosen})" if chosen else "")] = _score(
            run_dir, beam, chosen
        )
        runs[mode] = run
    report = {
        "machine": machine(),
        "split": "Flickr8k dev (1,000 images)",
        "command": command_line(__spec__.name, args),
        "args": vars(args),
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[c]:.1f}" if c in scores else "–" for c in COLUMNS) + " |")
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
