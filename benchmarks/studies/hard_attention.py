"""Hard attention that earns its place? Each estimator variant trained from the same soft model,
with a soft control under the same budget, scored on Flickr8k dev, with the gradient variance of
every estimator and the attention dynamics of every model.

Stages (run folders under --work; a finished one is scored, not trained again):

    soft control     sat-tf train --recipe flickr8k-lite0 --init-from <soft> --epochs E
                         --learning-rate LR --schedule constant --warmup-steps 0
    hard, paper      ... --attention hard                          (log p(y|s,a), moving average)
    hard, authors    ... --attention hard --hard-reward mean_word_log_likelihood   (lambda_r 0.1)
    hard, authors + leave-one-out
                     ... --hard-baseline leave_one_out --location-samples 4 --batch-size 16
                         --max-steps <the others' steps>     (same decoder passes as the others)
    + SCST           sat-tf train --recipe flickr8k-lite0-scst --scst-init-from <stage>/model.keras
                         (for the stages named by --scst)

Gradient variance: at the starting point (the soft model's weights in hard mode, dropout off, the
expectation switch off so every minibatch samples, b set to the mean reward of 8 warm-up draws),
--draws gradients of the task's loss on one fixed batch of 64 training captions; reported as the
total variance (sum over decoder parameters) and that of the attention MLP alone.
Attention dynamics: `benchmarks/studies/attention_dynamics.py`'s measures on greedy captions of 300 dev
images.

    python -m benchmarks.studies.hard_attention --soft runs/flickr8k/model.keras --work runs/hard \\
        [--epochs 1] [--learning-rate 1e-4] [--scst hard_authors] [--scst-epochs 3]

Needs the Flickr8k folder described in ../shared/data/README.md and the soft run's feature caches.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.common import DATA, add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from benchmarks.studies.attention_dynamics import attention_dynamics  # noqa: E402
from benchmarks.common import SCORE_COLUMNS as COLUMNS  # noqa: E402
from benchmarks.common import command_line, machine, train_stage, write_report  # noqa: E402

from sat_tf.data.feature_cache import FeatureCache  # noqa: E402
from sat_tf.inference import generate_captions  # noqa: E402
from sat_tf.inference.decoding_config import DecodingConfig  # noqa: E402
from sat_tf.models.config import build_captioner  # noqa: E402
from sat_tf.training import CaptioningTask  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402
from sat_tf.workflows import evaluate_captioner, resolve_run_config  # noqa: E402
from sat_tf.workflows.evaluate import default_evaluation_data  # noqa: E402
from sat_tf.workflows.models import initialize_from, load_captioner  # noqa: E402

AUTHORS = {"attention": "hard", "hard_reward": "mean_word_log_likelihood"}
# name -> (model settings, training settings beyond the shared ones)
VARIANTS = {
    "soft_control": ({"attention": "soft"}, {}),
    "hard_paper": ({"attention": "hard", "hard_reward": "log_likelihood"}, {}),
    "hard_authors": (AUTHORS, {}),
    "hard_authors_loo": ({**AUTHORS, "hard_baseline": "leave_one_out", "location_samples": 4}, {"batch_size": 16}),
}


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA / "flickr8k"))
    parser.add_argument("--soft", default="runs/flickr8k/model.keras", help="the trained soft model to start from")
    parser.add_argument("--work", default="runs/hard")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--scst", nargs="*", default=[], help="variants to fine-tune with SCST afterwards")
    parser.add_argument("--scst-epochs", type=int, default=3)
    parser.add_argument("--draws", type=int, default=16, help="gradient draws for the variance")
    parser.add_argument("--beam", type=int, default=3)
    add_output_argument(parser, "hard_attention")
    return parser.parse_args()


def _caches(soft: str) -> dict:
    """The soft run's feature caches (train and validation), which every stage reads."""
    run = Path(soft).parent if Path(soft).is_file() else Path(soft)
    return {
        "data": {"feature_cache": str(run / "features" / "train")},
        "validation": {"feature_cache": str(run / "features" / "validation")},
    }


def _score(run_dir: Path, beam: int, features: np.ndarray) -> dict:
    """Dev metrics of the run's last model at this beam, and its attention dynamics (kept in the
    run folder, so a rerun that adds stages does not score the finished ones again)."""
    scores_file = run_dir / f"dev_beam{beam}_dynamics.json"
    if scores_file.is_file():
        return json.loads(scores_file.read_text())
    model_path = run_dir / "model.keras"
    report = evaluate_captioner(
        [str(model_path)], default_evaluation_data(run_dir), DecodingConfig(beam_size=beam), verbose=False
    )
    decoded = generate_captions(load_captioner(model_path), features=features, max_length=20).best()
    scores = {**{k: report[k] for k in COLUMNS}, **attention_dynamics(decoded.alphas, decoded.lengths)}
    write_json_atomic(scores_file, scores)
    return scores


def _gradient_variance(soft, settings: dict, batch: dict, draws: int, seed: int = 0) -> dict:
    """Total variance of the task's gradient over `draws` location samples on one batch."""
    config = resolve_run_config("flickr8k-lite0", overrides={"model": settings}).model
    keras.utils.set_random_seed(seed)
    model = initialize_from(build_captioner(config, soft.tokenizer), soft, "soft model")
    model.decoder.expectation_probability = 0.0
    model.decoder.output_dropout.rate = 0.0
    task = CaptioningTask(model)
    variables = model.decoder.trainable_variables
    attention_ids = {id(v) for v in model.decoder.attention.trainable_variables}

    def gradient_function():  # traced anew: the baseline's decay is read when tracing
        @tf.function
        def gradient():
            with tf.GradientTape() as tape:
                loss, _ = task.compute_caption_loss(batch, training=True)
            return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

        return gradient

    model.baseline_decay = 0.0  # b becomes each draw's mean reward
    warm_up, baseline_draws = gradient_function(), []
    for _ in range(8):  # the moving average's level after warm-up: the mean reward
        warm_up()
        baseline_draws.append(float(model.reward_baseline))
    model.reward_baseline.assign(float(np.mean(baseline_draws)))
    model.baseline_decay = 1.0  # b stays fixed while measuring
    gradient = gradient_function()
    samples = [[g.numpy() for g in gradient()] for _ in range(draws)]
    variance = [np.stack(per_variable).var(axis=0, ddof=1).sum() for per_variable in zip(*samples)]
    attention = sum(v for v, var in zip(variance, variables) if id(var) in attention_ids)
    return {
        "total_variance": float(sum(variance)),
        "attention_variance": float(attention),
        "baseline": float(model.reward_baseline),
        "draws": draws,
        "decoder_passes_per_caption": model.location_samples if model.decoder.attention_mode == "hard" else 1,
    }


def _fixed_batch(overrides: dict, soft, size: int = 64) -> dict:
    """The first `size` training captions (in the caption file's order) with their cached features."""
    from sat_tf.data.pipeline import encode_captions
    from sat_tf.data.sources import load_captions

    config = resolve_run_config("flickr8k-lite0", overrides=overrides)
    data = load_captions(config.data, soft.encoder.image_size, id_prefix="train", verbose=False)
    captions = encode_captions(
        data.records, soft.tokenizer, data.image_index, max_words=config.data.max_caption_words, drop_long=True
    )
    tokens = captions.tokens[:size, : int(captions.lengths[:size].max())]
    features = FeatureCache(config.data.feature_cache).gather(captions.image_index[:size])
    return {"features": tf.constant(features), "tokens": tf.constant(tokens)}


def main() -> None:
    args = _parse_args()
    work = Path(args.work)
    caches = _caches(args.soft)
    shared = {
        "data": {"data_root": args.data, **caches["data"]},
        "validation": caches["validation"],
        "training": {
            "init_from": args.soft,
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "schedule": "constant",
            "warmup_steps": 0,
            "precision": "float32",
        },
    }
    steps = None
    rows, variances = {}, {}
    soft = load_captioner(args.soft)
    dev = FeatureCache(caches["validation"]["feature_cache"])
    dev_features = dev.gather(np.arange(min(300, len(dev))))
    batch = _fixed_batch({k: shared[k] for k in ("data", "validation")}, soft)
    for name in args.variants:
        model_settings, training = VARIANTS[name]
        overrides = {**shared, "model": model_settings, "training": {**shared["training"], **training}}
        if "batch_size" in training and steps is not None:  # same decoder passes as 64-caption steps
            overrides["training"]["max_steps"] = steps
        timing = train_stage(work / name, "flickr8k-lite0", overrides)
        steps = steps or timing.get("steps")
        rows[name] = {**_score(work / name, args.beam, dev_features), "train_seconds": timing.get("train_seconds")}
        variance_file = work / name / f"gradient_variance_{args.draws}.json"
        if model_settings["attention"] == "hard" and variance_file.is_file():
            variances[name] = json.loads(variance_file.read_text())
        elif model_settings["attention"] == "hard":
            variances[name] = _gradient_variance(soft, model_settings, batch, args.draws)
            write_json_atomic(variance_file, variances[name])
    for name in args.scst:
        run_dir = work / f"{name}_scst"
        overrides = {
            "scst": {"init_from": str(work / name / "model.keras")},
            "training": {"epochs": args.scst_epochs},
            "data": {"data_root": args.data, **caches["data"]},
            "validation": caches["validation"],
        }
        timing = train_stage(run_dir, "flickr8k-lite0-scst", overrides)
        rows[f"{name}_scst"] = {
            **_score(run_dir, args.beam, dev_features),
            "train_seconds": timing.get("train_seconds"),
        }
    report = {
        "machine": machine(),
        "split": "Flickr8k dev (1,000 images; dynamics on 300)",
        "command": command_line(__spec__.name, args),
        "beam": args.beam,
        "rows": rows,
        "gradient_variance": variances,
    }
    lines = [
        "| run | " + " | ".join(COLUMNS) + " | steps at modal region | L1 change | training |",
        "|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    for name, scores in rows.items():
        trained = f"{scores['train_seconds'] / 60:.1f} min" if scores.get("train_seconds") else "–"
        lines.append(
            f"| {name} | "
            + " | ".join(f"{scores[c]:.1f}" for c in COLUMNS)
            + f" | {scores['steps_at_modal_region']:.0%} | {scores['mean_l1_change_between_steps']:.2f}"
            + f" | {trained} |"
        )
    lines += [
        "",
        "| estimator | gradient total variance | of which attention MLP | decoder passes per caption |",
        "|---|---|---|---|",
    ]
    for name, measured in variances.items():
        lines.append(
            f"| {name} | {measured['total_variance']:.4g} | {measured['attention_variance']:.4g} | "
            f"{measured['decoder_passes_per_caption']} |"
        )
    write_report(args.output, report, "\n".join(lines))


if __name__ == "__main__":
    main()
