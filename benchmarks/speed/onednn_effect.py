"""What oneDNN's kernels buy on this CPU: the same three measurements with TF_ENABLE_ONEDNN_OPTS=1
(what sat_tf sets) and =0 (TensorFlow's own default on CPUs without AVX-512 VNNI/BF16 or AMX),
each in a fresh process, since TensorFlow reads the setting once at import:

- the paper-size training step of `train_throughput.py` (float32, batch 64 x 13 target tokens);
- the `sat-tf demo` captioner's training step (64 px images through the small CNN);
- the EfficientNet-Lite0 encoder of the shipped preset, per 224 px photo at batch 1 and 16.

    python -m benchmarks.speed.onednn_effect [--output benchmarks/results/onednn_effect.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks.common import add_output_argument

SETTINGS = ("1", "0")


def measure_here(steps: int) -> dict:
    """The three measurements in this process (oneDNN as this process's environment set it)."""
    import numpy as np
    import tensorflow as tf
    import train_throughput as throughput

    from benchmarks.common import median_ms
    from sat_tf.data.tokenizer import CaptionTokenizer
    from sat_tf.models.config import build_captioner
    from sat_tf.workflows import load_captioner, resolve_run_config

    rng = np.random.default_rng(0)
    paper = throughput.measure(throughput._paper_size_model(), [throughput._feature_batch(rng, 64, [13] * 64)], steps)
    demo = resolve_run_config("shapes-demo")
    tokenizer = CaptionTokenizer([f"w{i}" for i in range(21)])
    tokens = rng.integers(4, tokenizer.vocabulary_size, size=(demo.training.batch_size, 11)).astype(np.int32)
    tokens[:, 0], tokens[:, -1] = 1, 2
    size = demo.model.image_size
    demo_batch = {
        "images": tf.constant(rng.integers(0, 256, (len(tokens), size, size, 3)), tf.uint8),
        "tokens": tf.constant(tokens),
    }
    demo_step = throughput.measure(build_captioner(demo.model, tokenizer), [demo_batch], steps)
    preset = load_captioner("flickr8k_lite0")
    encode = tf.function(lambda images: preset.encode(images, training=False))
    encoder = {}
    for batch in (1, 16):
        images = tf.constant(rng.uniform(0, 255, (batch, 224, 224, 3)).astype(np.float32))
        encoder[f"batch_{batch}_ms_per_photo"] = (
            median_ms(lambda images=images: encode(images).numpy(), runs=10) / batch
        )
    return {
        "paper_size_tokens_per_second": paper["tokens_per_second"],
        "paper_size_ms_per_step": paper["ms_per_step"],
        "demo_ms_per_step": demo_step["ms_per_step"],
        "encoder": encoder,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15)
    add_output_argument(parser, "onednn_effect.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one setting, in the environment the parent chose
        print(json.dumps(measure_here(args.steps)))
        return
    from benchmarks.common import machine
    from sat_tf.utils.atomic import write_json_atomic

    report = {"machine": machine(), "command": "python -m benchmarks.speed.onednn_effect", "runs": {}}
    for setting in SETTINGS:
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
        child = subprocess.run(
            [sys.executable, "-m", __spec__.name, "--child", "--steps", str(args.steps)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        report["runs"][f"TF_ENABLE_ONEDNN_OPTS={setting}"] = json.loads(child.stdout.strip().splitlines()[-1])
        print(setting, report["runs"][f"TF_ENABLE_ONEDNN_OPTS={setting}"], flush=True)
    write_json_atomic(args.output, report)


if __name__ == "__main__":
    main()
