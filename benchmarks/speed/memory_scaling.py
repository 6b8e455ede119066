"""Peak memory of training from a feature cache does not grow with the dataset.

Writes two synthetic feature caches (default 5,000 and 50,000 images of 49 x 1280 float16
features, EfficientNet-Lite0's shape: 0.6 and 6.3 GB on disk), then, each in a fresh process,
trains a decoder for one full epoch over one caption per image (so every feature row is read)
and reports the process's peak RSS (ru_maxrss).

    python -m benchmarks.speed.memory_scaling [--sizes 5000 50000] [--work runs/memory_scaling]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    add_output_argument,
    machine,  # noqa: E402  (benchmarks/common.py)
)

REGIONS, FEATURE_DIM, WORDS = 49, 1280, 1000


def build_cache(cache_dir: Path, num_images: int) -> None:
    import numpy as np

    from sat_tf.data.feature_cache import CacheIdentity, extract_features

    identity = CacheIdentity(
        encoder={"synthetic": True},
        encoder_fingerprint="synthetic",
        images_checksum=str(num_images),
        num_images=num_images,
    )

    def encode(indices: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(int(indices[0]))
        return rng.standard_normal((len(indices), REGIONS, FEATURE_DIM), dtype=np.float32)

    extract_features(
        encode,
        lambda paths: np.asarray([int(p) for p in paths]),
        [str(i) for i in range(num_images)],
        cache_dir,
        identity,
        batch_size=256,
        shard_size=2048,
        verbose=False,
    )


def train_one_epoch(cache_dir: Path, num_images: int, output_dir: Path) -> dict:
    import numpy as np

    from sat_tf.data.feature_cache import FeatureCache
    from sat_tf.data.pipeline import encode_captions
    from sat_tf.data.records import CaptionRecord
    from sat_tf.data.tokenizer import CaptionTokenizer
    from sat_tf.models.config import ModelConfig, build_captioner
    from sat_tf.training import TrainConfig, TrainingData, train

    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(WORDS)]
    records = [
        CaptionRecord(
            image_id=str(i),
            caption=" ".join(rng.choice(vocabulary, rng.integers(6, 16))),
            image_path=str(i),
            image_index=i,
        )
        for i in range(num_images)
    ]
    tokenizer = CaptionTokenizer(vocabulary)
    captions = encode_captions(records, tokenizer, list(range(num_images)), max_words=18)

    def build_model():
        return build_captioner(
            ModelConfig(
                image_size=224,
                cnn_filters=(8, 8, 8, 8, FEATURE_DIM - 2),
                append_coordinates=True,
                embedding_dim=64,
                hidden_dim=128,
                attention_dim=64,
            ),
            tokenizer,
        )

    config = TrainConfig(batch_size=64, epochs=1, checkpoint_every=10**9, log_every=10**9)
    start = time.perf_counter()
    result = train(build_model, TrainingData(FeatureCache(cache_dir), captions), config, output_dir, verbose=False)
    return {
        "steps": result.steps,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--work", default="runs/memory_scaling")
    add_output_argument(parser, "memory_scaling.json")
    parser.add_argument("--child", nargs=2, metavar=("CACHE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measurement, in its own process
        cache_dir, num_images = Path(args.child[0]), int(args.child[1])
        print(json.dumps(train_one_epoch(cache_dir, num_images, cache_dir.parent / f"train-{num_images}")))
        return
    work = Path(args.work)
    report = {
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "feature_shape": [REGIONS, FEATURE_DIM],
        "runs": {},
    }
    for size in args.sizes:
        cache_dir = work / f"cache-{size}"
        build_cache(cache_dir, size)
        disk = sum(p.stat().st_size for p in cache_dir.glob("*.npy"))
        child = subprocess.run(
            [sys.executable, "-m", __spec__.name, "--child", str(cache_dir), str(size)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        run = json.loads(child.stdout.strip().splitlines()[-1])
        report["runs"][str(size)] = {**run, "cache_gb": disk / 1e9}
        print(size, report["runs"][str(size)], flush=True)
    peaks = [r["peak_rss_mb"] for r in report["runs"].values()]
    report["peak_rss_ratio_largest_to_smallest"] = peaks[-1] / peaks[0]
    print(json.dumps(report, indent=2))
    from sat_tf.utils.atomic import write_json_atomic

    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
