"""The Flickr8k recipe end to end: extract features, train soft attention, select on dev BLEU-4,
decode dev with greedy and beam search, score with coco-caption, and write a results table with
the paper's Flickr8k rows beside ours.

    python benchmarks/flickr8k.py [--data ../shared/data/flickr8k] [--work runs/flickr8k] [--epochs 8]

Needs the Flickr8k folder described in ../shared/data/README.md (images + token file + splits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sat_tf.data.pipeline import encode_captions  # noqa: E402
from sat_tf.data.readers import index_images, read_flickr_tokens, require_image_files  # noqa: E402
from sat_tf.data.records import group_references  # noqa: E402
from sat_tf.data.tokenizer import CaptionTokenizer  # noqa: E402
from sat_tf.evaluation.bleu import corpus_bleu  # noqa: E402
from sat_tf.evaluation.metrics import caption_metrics  # noqa: E402
from sat_tf.inference.beam_search import BeamSearchDecoder  # noqa: E402
from sat_tf.inference.features import extract_to_cache  # noqa: E402
from sat_tf.inference.greedy import GreedyDecoder, concatenate_decoded  # noqa: E402
from sat_tf.models import AttentionDecoder, Captioner, Encoder  # noqa: E402
from sat_tf.training import TrainConfig, TrainingData, train  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic, write_text_atomic  # noqa: E402

PAPER_ROWS = {
    "Xu et al. 2015, soft attention": {"BLEU-1": 67.0, "BLEU-2": 44.8, "BLEU-3": 29.9, "BLEU-4": 19.5,
                                       "METEOR": 18.93},
    "Xu et al. 2015, hard attention": {"BLEU-1": 67.0, "BLEU-2": 45.7, "BLEU-3": 31.4, "BLEU-4": 21.3,
                                       "METEOR": 20.30},
}
COLUMNS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def _decode(decoder, features, batch_size=100):
    parts = []
    for i in range(0, len(features), batch_size):
        out = decoder(features=features[i : i + batch_size])
        parts.append(out.best() if hasattr(out, "best") else out)
    return concatenate_decoded(parts)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k"))
    parser.add_argument("--work", default="runs/flickr8k")
    parser.add_argument("--attention", nargs="+", default=["soft"], choices=["soft", "hard"],
                        help="attention modes to train, each under the same budget")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=None, help="stop training early (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--feature-layer", default="top", choices=["top", "stride16"])
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        choices=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--penalty-weight", type=float, default=0.0, help="lambda of the doubly stochastic penalty")
    parser.add_argument("--cache-root", default=None, help="where feature caches live (default: --work)")
    parser.add_argument("--patience", type=int, default=2, help="early stopping patience in epochs")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/flickr8k")
    return parser.parse_args()


def _hard_gradient_variance(model, captions, features, repeats: int = 16) -> dict:
    """Variance of the hard-attention gradient estimate over repeated location samples on one batch
    of 64 training captions, with the model's moving-average baseline and with b = 0."""
    import tensorflow as tf

    batch = {"features": tf.constant(features[captions.image_index[:64]]),
             "tokens": tf.constant(captions.tokens[:64, : int(captions.lengths[:64].max())])}
    variables = model.decoder.trainable_variables
    model.decoder.expectation_probability = 0.0  # always sample

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            loss, _ = model.compute_caption_loss(batch, training=True)
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


def main() -> None:
    args = _parse_args()
    started = time.perf_counter()
    data, work = Path(args.data), Path(args.work)
    tokens = data / "Flickr8k.token.txt"
    train_records = read_flickr_tokens(tokens, data / "Flickr_8k.trainImages.txt")
    dev_records = read_flickr_tokens(tokens, data / "Flickr_8k.devImages.txt")
    require_image_files(train_records + dev_records)
    train_paths, train_index = index_images(train_records)
    dev_paths, dev_index = index_images(dev_records)

    encoder = Encoder(args.backbone, weights="imagenet", feature_layer=args.feature_layer)
    timings = {}
    tick = time.perf_counter()
    cache_root = Path(args.cache_root or work)
    train_cache = extract_to_cache(encoder, train_paths, cache_root / f"cache-train-{args.backbone}-{args.feature_layer}")
    dev_cache = extract_to_cache(encoder, dev_paths, cache_root / f"cache-dev-{args.backbone}-{args.feature_layer}")
    timings["extract_seconds"] = time.perf_counter() - tick
    dev_features = dev_cache.gather(np.arange(len(dev_cache)))
    dev_refs = group_references(dev_records, [dev_paths[i] for i in dev_index])

    tokenizer = CaptionTokenizer.from_corpus([r.caption for r in train_records], min_count=5)
    captions = encode_captions(train_records, tokenizer, train_index, max_length=24, skip_invalid=True)

    def score(decoder):
        tick = time.perf_counter()
        decoded = _decode(decoder, dev_features)
        scores = caption_metrics(dev_refs, dict(zip(dev_paths, decoded.texts)))
        scores["decode_seconds"] = time.perf_counter() - tick
        return scores

    def validate(model):
        decoded = _decode(GreedyDecoder(model, 20), dev_features)
        return corpus_bleu(dev_refs, dict(zip(dev_paths, decoded.texts)))["BLEU-4"]

    config = TrainConfig(batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps,
                         learning_rate=args.learning_rate,
                         schedule="cosine", warmup_steps=200, clip_norm=5.0, checkpoint_every=1000,
                         log_every=50, early_stopping_patience=args.patience)
    rows, runs = dict(PAPER_ROWS), {}
    for mode in args.attention:
        def build_model(mode=mode):
            decoder = AttentionDecoder(tokenizer.vocabulary_size, 512, 512, 512, dropout=args.dropout,
                                       attention_mode=mode)
            return Captioner(Encoder(args.backbone, weights="imagenet", feature_layer=args.feature_layer),
                             decoder, tokenizer, penalty_weight=args.penalty_weight)

        tick = time.perf_counter()
        result = train(build_model, TrainingData(train_cache, captions), config, work / mode, validate=validate)
        run = {"train_seconds": time.perf_counter() - tick, "train_tokens_per_second": result.tokens_per_second,
               "train_steps": result.steps, "validation": [h for h in result.history if "validation_score" in h]}
        selected = work / mode / "best_model.keras"
        if selected.is_file():
            run["best"] = json.loads((work / mode / "best.json").read_text())
        else:  # stopped (--max-steps) before the first validation
            selected = work / mode / "model.keras"
        best = keras.saving.load_model(selected)
        inference_modes = ["argmax", "sample", "expectation"] if mode == "hard" else [None]
        greedy_by_mode = {}
        for inference in inference_modes:
            if inference:
                best.decoder.hard_inference = inference
            greedy_by_mode[inference] = score(GreedyDecoder(best, 20))
        # Hard attention at test time: the option with the best greedy dev BLEU-4 (README: hard attention).
        chosen = max(greedy_by_mode, key=lambda m: greedy_by_mode[m]["BLEU-4"])
        for inference, scores in greedy_by_mode.items():
            rows[f"sat_tf {mode}, greedy" + (f" ({inference})" if inference else "")] = scores
        if chosen:
            best.decoder.hard_inference = chosen
            run["hard_inference_chosen"] = chosen
            run["gradient_variance"] = _hard_gradient_variance(best, captions, train_cache.gather(
                np.arange(len(train_cache))))
        rows[f"sat_tf {mode}, beam {args.beam_size}" + (f" ({chosen})" if chosen else "")] = score(
            BeamSearchDecoder(best, args.beam_size, 20))
        runs[mode] = run
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "split": "Flickr8k dev (1,000 images)",
              "command": "python benchmarks/flickr8k.py " + " ".join(
                  f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                  for k, v in vars(args).items() if k not in ("data", "output")),
              "args": vars(args), "runs": runs, **timings,
              "wall_seconds": time.perf_counter() - started, "rows": rows}
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[c]:.1f}" if c in scores else "–" for c in COLUMNS) + " |")
    table = "\n".join(lines)
    print(table)
    write_json_atomic(f"{args.output}.json", report)
    write_text_atomic(f"{args.output}.md", table + "\n")


if __name__ == "__main__":
    main()
