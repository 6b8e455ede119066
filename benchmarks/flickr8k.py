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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k"))
    parser.add_argument("--work", default="runs/flickr8k")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--feature-layer", default="top", choices=["top", "stride16"])
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        choices=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--patience", type=int, default=2, help="early stopping patience in epochs")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/flickr8k")
    args = parser.parse_args()
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
    train_cache = extract_to_cache(encoder, train_paths, work / f"cache-train-{args.backbone}-{args.feature_layer}")
    dev_cache = extract_to_cache(encoder, dev_paths, work / f"cache-dev-{args.backbone}-{args.feature_layer}")
    timings["extract_seconds"] = time.perf_counter() - tick
    dev_features = dev_cache.gather(np.arange(len(dev_cache)))
    dev_refs = group_references(dev_records, [dev_paths[i] for i in dev_index])

    tokenizer = CaptionTokenizer.from_corpus([r.caption for r in train_records], min_count=5)
    captions = encode_captions(train_records, tokenizer, train_index, max_length=24, skip_invalid=True)

    def build_model():
        decoder = AttentionDecoder(tokenizer.vocabulary_size, 512, 512, 512, dropout=args.dropout)
        return Captioner(Encoder(args.backbone, weights="imagenet", feature_layer=args.feature_layer),
                         decoder, tokenizer)

    def validate(model):
        decoded = _decode(GreedyDecoder(model, 20), dev_features)
        return corpus_bleu(dev_refs, dict(zip(dev_paths, decoded.texts)))["BLEU-4"]

    config = TrainConfig(batch_size=args.batch_size, epochs=args.epochs, learning_rate=args.learning_rate,
                         schedule="cosine", warmup_steps=200, clip_norm=5.0, checkpoint_every=1000,
                         log_every=50, early_stopping_patience=args.patience)
    tick = time.perf_counter()
    result = train(build_model, TrainingData(train_cache, captions), config, work / "soft", validate=validate)
    timings["train_seconds"] = time.perf_counter() - tick

    import keras

    best = keras.saving.load_model(work / "soft" / "best_model.keras")
    rows = dict(PAPER_ROWS)
    for name, decoder in (("sat_tf soft, greedy", GreedyDecoder(best, 20)),
                          (f"sat_tf soft, beam {args.beam_size}", BeamSearchDecoder(best, args.beam_size, 20))):
        tick = time.perf_counter()
        decoded = _decode(decoder, dev_features)
        scores = caption_metrics(dev_refs, dict(zip(dev_paths, decoded.texts)))
        scores["decode_seconds"] = time.perf_counter() - tick
        rows[name] = scores
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "split": "Flickr8k dev (1,000 images)",
              "args": vars(args), "train_tokens_per_second": result.tokens_per_second, "train_steps": result.steps,
              "best": json.loads((work / "soft" / "best.json").read_text()),
              "validation": [h for h in result.history if "validation_score" in h], **timings,
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
