"""Does attention move over time? For each model, greedy captions of cached dev features and, per
caption: the share of steps whose most-attended region is the caption's most frequent one, the
mean attention entropy (nats; uniform over L regions is log L), and the mean L1 change of alpha
between consecutive steps. Nearly constant attention (a failure reported for hard-attention
ports) shows as a high modal share and a small step-to-step change.

    python -m benchmarks.studies.attention_dynamics --cache runs/flickr8k_final/cache-dev-efficientnet_lite0-top \\
        --models runs/flickr8k_final/soft/best_model.keras runs/flickr8k_final/hard/best_model.keras
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: sets TensorFlow's oneDNN switch as sat_tf's commands do)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import sat_tf.models  # noqa: E402,F401  (registers the classes)
from sat_tf.data.feature_cache import FeatureCache  # noqa: E402
from sat_tf.inference import generate_captions  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402


def attention_dynamics(alphas: np.ndarray, lengths: np.ndarray) -> dict:
    modal, entropy, change = [], [], []
    for alpha, length in zip(alphas, lengths):
        alpha = alpha[:length]
        modal.append(np.bincount(alpha.argmax(-1)).max() / len(alpha))
        entropy.append(float(np.mean(-(alpha * np.log(alpha + 1e-12)).sum(-1))))
        change.append(float(np.abs(np.diff(alpha, axis=0)).sum(-1).mean()) if len(alpha) > 1 else 0.0)
    return {
        "steps_at_modal_region": float(np.mean(modal)),
        "mean_entropy_nats": float(np.mean(entropy)),
        "uniform_entropy_nats": float(np.log(alphas.shape[-1])),
        "mean_l1_change_between_steps": float(np.mean(change)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--images", type=int, default=300)
    add_output_argument(parser, "attention_dynamics.json")
    args = parser.parse_args()
    cache = FeatureCache(args.cache)
    features = cache.gather(np.arange(min(args.images, len(cache))))
    report = {"command": " ".join(["python", *sys.argv]), "images": len(features), "models": {}}
    for path in args.models:
        model = keras.saving.load_model(path)
        decoded = generate_captions(model, features=features, max_length=20).best()
        report["models"][path] = {
            "attention_mode": model.decoder.attention_mode,
            **attention_dynamics(decoded.alphas, decoded.lengths),
        }
    print(json.dumps(report, indent=2))
    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
