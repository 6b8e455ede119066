"""Training throughput of the custom loop (target tokens per second) on this machine.

Two model sizes: the demo's captioner (64 px synthetic images through the small CNN, trained end
to end) and the paper-size decoder (embedding/hidden/attention 512 over 49 x 1280 cached features,
as EfficientNet-Lite0 gives at 224 px). Random data of realistic caption lengths; the first steps
(tracing) are excluded.

    python benchmarks/train_throughput.py [--steps 60] [--output benchmarks/results/train_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from sat_tf.data.tokenizer import CaptionTokenizer  # noqa: E402
from sat_tf.demo import DemoConfig, build_demo_model  # noqa: E402
from sat_tf.models import AttentionDecoder, Captioner, Encoder  # noqa: E402
from sat_tf.training import TrainConfig, build_train_step  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402


def _batch(rng, batch_size, caption_length, vocabulary_size, images=None, features=None):
    tokens = rng.integers(4, vocabulary_size, size=(batch_size, caption_length)).astype(np.int32)
    tokens[:, 0], tokens[:, -1] = 1, 2
    batch = {"tokens": tf.constant(tokens)}
    if images is not None:
        batch["images"] = tf.constant(rng.integers(0, 256, size=(batch_size, images, images, 3)).astype(np.uint8))
    else:
        batch["features"] = tf.constant(rng.normal(size=(batch_size, *features)).astype(np.float32))
    return batch


def measure(model: Captioner, batch: dict, steps: int, warmup: int = 5) -> dict:
    config = TrainConfig(learning_rate=1e-4)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, tf.distribute.get_strategy(), config)
    for _ in range(warmup):
        step(batch)["loss"].numpy()
    start = time.perf_counter()
    tokens = 0.0
    for _ in range(steps):
        logs = step(batch)
        tokens += float(logs["tokens"])
    seconds = time.perf_counter() - start
    return {"tokens_per_second": tokens / seconds, "ms_per_step": 1000 * seconds / steps,
            "batch_size": int(batch["tokens"].shape[0]), "caption_tokens": int(batch["tokens"].shape[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--output", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
               "tensorflow": tf.__version__}

    demo = DemoConfig()
    tokenizer = CaptionTokenizer([f"w{i}" for i in range(21)])
    model = build_demo_model(demo, tokenizer)
    results["demo_model"] = measure(model, _batch(rng, demo.batch_size, 10, tokenizer.vocabulary_size,
                                                  images=demo.image_size), args.steps)

    tokenizer = CaptionTokenizer([f"w{i}" for i in range(8000)])
    results["paper_size_decoder_on_features"] = measure(
        _paper_size_model(tokenizer), _batch(rng, 64, 14, tokenizer.vocabulary_size, features=(49, 1280)),
        max(10, args.steps // 4))
    print(json.dumps(results, indent=2))
    write_json_atomic(args.output, results)


def _paper_size_model(tokenizer: CaptionTokenizer) -> Captioner:
    """512/512/512 decoder over 49 regions of 1280 features. The encoder only fixes the 7x7 grid and
    feature size; the benchmark feeds cached-style features, so it never runs."""
    encoder = Encoder("small_cnn", image_size=224, small_cnn_filters=(8, 8, 8, 8, 1278), append_coordinates=True)
    decoder = AttentionDecoder(tokenizer.vocabulary_size, 512, 512, 512, dropout=0.5)
    return Captioner(encoder, decoder, tokenizer)


if __name__ == "__main__":
    main()
