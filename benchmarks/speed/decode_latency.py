"""Caption latency at batch 1: greedy and beam search (median of N runs), from what a feature cache
holds (region features, or for a model whose encoder fine-tunes top blocks the activations below
them, so the top blocks run) and from a photo through the whole encoder.

    python -m benchmarks.speed.decode_latency --model runs/flickr8k/soft/best_model.keras [--runs 50]
    python -m benchmarks.speed.decode_latency --model flickr8k_lite0 \\
        --output benchmarks/results/decode_latency_preset.json
    python -m benchmarks.speed.decode_latency --model runs/a runs/b --beam-size 5   # an ensemble, from a photo

Inputs are random with the model's shapes: decoding cost does not depend on their values, only on
how many steps the caption takes, which is reported beside the times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import command_line, machine  # noqa: E402
from sat_tf.inference import BeamSampler, GreedySampler, generate_captions  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402
from sat_tf.workflows.models import load_captioners  # noqa: E402


def _time(decode, features, runs: int) -> tuple[float, float]:
    for _ in range(3):
        decode(features)  # tracing and warm-up
    times, steps = [], []
    for _ in range(runs):
        tick = time.perf_counter()
        steps.append(decode(features))
        times.append(1000 * (time.perf_counter() - tick))
    return statistics.median(times), float(np.mean(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="a model, or several: an ensemble")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--from-images", action="store_true", help="time only the whole path from a photo")
    add_output_argument(parser, "decode_latency.json")
    args = parser.parse_args()
    model = load_captioners(args.model)
    rng = np.random.default_rng(0)
    size = model.encoder.image_size
    image = rng.uniform(0, 255, size=(1, size, size, 3)).astype(np.float32)
    inputs = {"image": {"images": image}}
    # From what a feature cache holds (region features, or a fine-tuned encoder's frozen-part
    # activations); an ensemble's members may read different features, so it starts from a photo.
    if not args.from_images and len(args.model) == 1:
        inputs = {"features": {"features": model.encoder.cache_input(image).numpy()}, **inputs}
    result = {
        "machine": machine(),
        "model": " ".join(args.model),
        "command": command_line(__spec__.name, args, skip=("output",)),
    }
    # Whole call as a user makes it (inputs in, DecodedCaptions with texts out), with and
    # without XLA compilation of the decoding loop.
    for source, arguments in inputs.items():
        timings = result[f"from_{source}"] = {}
        for jit_compile in (True, False):
            suffix = "" if jit_compile else "_no_jit"
            for name, sampler in (("greedy", GreedySampler()), (f"beam{args.beam_size}", BeamSampler(args.beam_size))):
                timings[f"{name}_ms{suffix}"], timings[f"{name}_steps"] = _time(
                    lambda x, sampler=sampler, jit=jit_compile: generate_captions(
                        model, **x, sampler=sampler, max_length=args.max_length, jit_compile=jit
                    ).tokens.shape[2],
                    arguments,
                    args.runs,
                )
    print(json.dumps(result, indent=2))
    write_json_atomic(args.output, result)


if __name__ == "__main__":
    main()
