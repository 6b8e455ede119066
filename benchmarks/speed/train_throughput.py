"""Training throughput of the custom loop (target tokens/s) and its fraction of this machine's
matmul peak, with what each optimisation buys.

In one run:
1. the dense matmul peak in TensorFlow (2048^3 in a tf.function, best of several repeats) in float32
   and in bfloat16, with oneDNN (what sat_tf enables) and, in a child process, float32 without it
   (TensorFlow's own default on CPUs without AVX-512 VNNI/BF16); and which oneDNN kernels a
   mixed_bfloat16 training step runs (a child process with ONEDNN_VERBOSE=1: the ISA oneDNN
   detected and each kernel's implementation name, `brg_matmul:avx512_core_amx` where AMX runs);
2. the paper-size decoder (embedding/hidden/attention 512, V = 8,004) over 49 x 1280 cached
   features (EfficientNet-Lite0 at 224 px), batch 64, 13 target tokens per caption, through
   `build_train_step` (forward, backward, clipping, Adam), cumulatively adding:
     naive            - what common ports do: W_a a recomputed every step, output layer inside the loop
     +precomputed W_a a - attention projection once per image
     +hoisted output  - deep output layer and softmax for all steps in one matmul after the loop
     +fused gates     - word part of the LSTM gates for all steps at once; h_{t-1}'s three matmuls
                        (recurrence, attention, gate) in one  [= sat_tf's decoder]
   and then, on top of sat_tf's decoder: jit_compile, batch 128, mixed_bfloat16 (Keras policy;
   native only with AVX512-BF16 or AMX, emulated elsewhere), and mixed_bfloat16 with batch 128;
   "sat_tf default" is the recipes' `precision: auto` as resolved on this CPU, and the summary gives
   its speed-up over the naive decoder and its fraction of the matmul peak of the precision it
   computes in (a bfloat16 variant against the bfloat16 peak, a float32 one against float32's);
3. length bucketing on Flickr8k-like caption lengths (padding to the batch max vs. buckets);
4. the demo captioner end to end (64 px images through the small CNN).

"Useful FLOPs" count each matmul the model needs once (W_a a once per caption, no recomputation),
forward x 3 for forward + backward; element-wise ops are not counted.

    python -m benchmarks.speed.train_throughput [--steps 20] [--output benchmarks/results/train_throughput.json]

The results record the CPU model and flags (AVX2, AVX-512, AVX512-BF16, AMX) and whether oneDNN was on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.common import add_output_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sat_tf  # noqa: E402, F401, I001  (first: turns oneDNN on before TensorFlow loads, as sat_tf's commands do)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchmarks import common
import tensorflow as tf  # noqa: E402
from sat_tf.data.tokenizer import CaptionTokenizer  # noqa: E402
from sat_tf.models import AttentionDecoder, Captioner  # noqa: E402
from sat_tf.models.config import ModelConfig, build_captioner  # noqa: E402
from sat_tf.training import TrainConfig, build_train_step  # noqa: E402
from sat_tf.training.precision import dtype_policy, resolve_precision  # noqa: E402
from sat_tf.utils.atomic import write_json_atomic  # noqa: E402
from sat_tf.utils.cpu import describe_cpu, parse_onednn_verbose  # noqa: E402
from sat_tf.workflows import resolve_run_config  # noqa: E402

REGIONS, FEATURE_DIM, UNITS, VOCABULARY = 49, 1280, 512, 8004


def matmul_peak_gflops(size: int = 2048, repeats: int = 10, dtype=tf.float32) -> float:
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs oneDNN kernels (private API; decided at import)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def matmul_peak_without_onednn() -> float:
    """The same peak in a child process started with TF_ENABLE_ONEDNN_OPTS=0."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.run(
        [sys.executable, "-m", __spec__.name, "--matmul-peak-only"], env=env, check=True, capture_output=True, text=True
    )
    return float(child.stdout.strip().splitlines()[-1])


def onednn_kernels(steps: int = 2) -> dict:
    """The oneDNN kernels a mixed_bfloat16 training step of the paper-size decoder runs, from a child
    process with ONEDNN_VERBOSE=1: {"isa", "implementations": {name: calls}, "amx": bool}."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.run(
        [sys.executable, "-m", __spec__.name, "--kernel-probe", str(steps)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return parse_onednn_verbose(child.stdout + child.stderr)


def _kernel_probe(steps: int) -> None:
    """The child of `onednn_kernels`: a few mixed_bfloat16 training steps (oneDNN logs to stdout)."""
    with dtype_policy("mixed_bfloat16"):
        model = _paper_size_model()
    batch = _feature_batch(np.random.default_rng(0), 64, [13] * 64)
    measure(model, [batch], steps, warmup=1)


def useful_flops_per_token(caption_targets: float) -> float:
    """Forward matmul FLOPs per target token of the paper-size decoder, x 3 for training."""
    per_caption = REGIONS * FEATURE_DIM * UNITS + 2 * FEATURE_DIM * UNITS  # W_a a, f_init_h, f_init_c
    per_token = (
        UNITS * UNITS  # W_h h
        + REGIONS * UNITS
        + REGIONS * FEATURE_DIM  # scores v^T tanh(.), context sum
        + (UNITS + FEATURE_DIM + UNITS) * 4 * UNITS  # LSTM gates
        + UNITS * UNITS
        + FEATURE_DIM * UNITS  # deep output L_h h, L_z z
        + UNITS * VOCABULARY  # L_o
    )
    return 3 * 2 * (per_token + per_caption / caption_targets)


class NaiveDecoder(AttentionDecoder):
    """The decoder as common ports write it: attention recomputes W_a a at every step and the output
    layer runs inside the recurrence. Same weights and results; only the order of work differs."""

    def __init__(self, *args, precompute_projection=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.precompute_projection = precompute_projection

    def teacher_forcing(self, features, input_tokens, training=False, locations=None):
        embeddings = tf.transpose(self.embed(input_tokens), [1, 0, 2])
        projected = self.project_features(features) if self.precompute_projection else None
        steps = tf.shape(input_tokens)[1]

        def body(t, state, logits, alphas):
            step_projected = projected if projected is not None else self.project_features(features)
            state, context, alpha = self.advance(step_projected, features, state, embeddings[t])
            step_logits = self.output_logits(embeddings[t], state.hidden, context, training=training)
            return t + 1, state, logits.write(t, step_logits), alphas.write(t, alpha)

        arrays = [tf.TensorArray(features.dtype, size=steps) for _ in range(2)]
        _, _, logits, alphas = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), self.initial_state(features), *arrays)
        )
        return {"logits": tf.transpose(logits.stack(), [1, 0, 2]), "alphas": tf.transpose(alphas.stack(), [1, 0, 2])}


class UnfusedDecoder(AttentionDecoder):
    """Output layer hoisted, but the word part of the gates computed per step and h_{t-1} multiplied
    by three separate kernels (as `AttentionDecoder` did before its fused kernels)."""

    def _advance(self, projected_features, features, state, word_gates, hidden_kernel, select=None):
        context, alpha = self.attention(features, state.hidden, projected_features=projected_features)
        context = self.gate(state.hidden) * context
        gates = (
            word_gates
            + tf.matmul(context, self.lstm_context_kernel)
            + tf.matmul(state.hidden, self.lstm_recurrent_kernel)
        )
        i, f, g, o = tf.split(gates, 4, axis=-1)
        cell = tf.sigmoid(f) * state.cell + tf.sigmoid(i) * tf.tanh(g)
        return type(state)(tf.sigmoid(o) * tf.tanh(cell), cell), context, alpha, None


PAPER_SIZE = ModelConfig(
    image_size=224,
    cnn_filters=(8, 8, 8, 8, FEATURE_DIM - 2),
    append_coordinates=True,
    embedding_dim=UNITS,
    hidden_dim=UNITS,
    attention_dim=UNITS,
    dropout=0.5,
)


def _paper_size_model(decoder_class=AttentionDecoder, **decoder_kwargs) -> Captioner:
    """512/512/512 decoder over 49 regions of 1280 features. The encoder only fixes the 7x7 grid and
    feature size; the benchmark feeds cached-style features, so it never runs. The ablation rows
    swap in decoder subclasses that undo one optimisation each."""
    keras.utils.set_random_seed(0)
    tokenizer = CaptionTokenizer([f"w{i}" for i in range(VOCABULARY - 4)])
    if decoder_class is AttentionDecoder and not decoder_kwargs:
        return build_captioner(PAPER_SIZE, tokenizer)
    decoder = decoder_class(tokenizer.vocabulary_size, UNITS, UNITS, UNITS, dropout=0.5, **decoder_kwargs)
    return Captioner(PAPER_SIZE.build_encoder(), decoder, tokenizer)


def _feature_batch(rng, batch_size, lengths):
    """Captions of the given target lengths (<start> ... <end>, padded to the longest)."""
    width = int(max(lengths)) + 1
    tokens = np.zeros((batch_size, width), np.int32)
    for row, length in enumerate(lengths):
        tokens[row, : length + 1] = rng.integers(4, VOCABULARY, size=length + 1)
        tokens[row, 0], tokens[row, length] = 1, 2
    features = rng.normal(size=(batch_size, REGIONS, FEATURE_DIM)).astype(np.float32)
    return {"features": tf.constant(features), "tokens": tf.constant(tokens)}


def measure(model: Captioner, batches: list[dict], steps: int, jit_compile=False, warmup: int = 3) -> dict:
    config = TrainConfig(learning_rate=1e-4, jit_compile=jit_compile)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, tf.distribute.get_strategy(), config)
    for batch in batches[:warmup] if len(batches) > 1 else batches * warmup:
        step(batch)["loss"].numpy()
    tokens = 0.0
    start = time.perf_counter()
    for i in range(steps):
        tokens += float(step(batches[i % len(batches)])["tokens"])
    seconds = time.perf_counter() - start
    return {
        "tokens_per_second": tokens / seconds,
        "ms_per_step": 1000 * seconds / steps,
        "batch_size": int(batches[0]["tokens"].shape[0]),
    }


def _with_fraction(result: dict, peaks: dict[str, float], precision: str, targets_per_caption: float) -> dict:
    """The result with its useful GFLOP/s and their fraction of the matmul peak of the precision
    the variant computes in (bfloat16 for the mixed_bfloat16 policy, float32 otherwise)."""
    compute = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    achieved = result["tokens_per_second"] * useful_flops_per_token(targets_per_caption) / 1e9
    return {
        **result,
        "precision": precision,
        "useful_gflops": achieved,
        "peak_precision": compute,
        "fraction_of_peak": achieved / peaks[compute],
    }


def _flickr_like_lengths(rng, count):
    """Flickr8k caption lengths (words + <end>): mean ~12.9, sd ~4, clipped to [4, 24]."""
    return np.clip(np.rint(rng.normal(12.9, 4.0, size=count)), 4, 24).astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    add_output_argument(parser, "train_throughput.json")
    parser.add_argument("--matmul-peak-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kernel-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.matmul_peak_only:  # the child process of `matmul_peak_without_onednn`
        print(matmul_peak_gflops())
        return
    if args.kernel_probe:  # the child process of `onednn_kernels`
        _kernel_probe(args.kernel_probe)
        return
    rng = np.random.default_rng(0)
    peaks = {"float32": matmul_peak_gflops(), "bfloat16": matmul_peak_gflops(dtype=tf.bfloat16)}
    peak_without = matmul_peak_without_onednn()
    kernels = onednn_kernels()
    print(
        f"matmul peak: {peaks['float32']:.0f} GFLOP/s float32, {peaks['bfloat16']:.0f} bfloat16 with oneDNN "
        f"({onednn_enabled()=}), {peak_without:.0f} float32 without; oneDNN ISA: {kernels['isa']}, "
        f"AMX kernels in the bf16 step: {kernels['amx']}",
        flush=True,
    )
    default_precision = resolve_precision("auto")
    results = {
        "machine": common.machine(),
        "cpu": describe_cpu(),
        "onednn": onednn_enabled(),
        "tensorflow": tf.__version__,
        "matmul_peak_gflops": peaks["float32"],
        "matmul_peak_gflops_bfloat16": peaks["bfloat16"],
        "matmul_peak_gflops_without_onednn": peak_without,
        "onednn_kernels_of_the_bf16_step": kernels,
        "default_precision": default_precision,
        "command": "python -m benchmarks.speed.train_throughput",
        "paper_size": {},
    }
    fixed = [_feature_batch(rng, 64, [13] * 64)]
    fixed128 = [_feature_batch(rng, 128, [13] * 128)]

    def record(name, model, batches, jit_compile=False, precision="float32"):
        result = _with_fraction(measure(model, batches, args.steps, jit_compile), peaks, precision, 13)
        results["paper_size"][name] = result
        print(
            f"{name:32s} {result['tokens_per_second']:7.0f} tok/s  {result['ms_per_step']:6.1f} ms/step  "
            f"{100 * result['fraction_of_peak']:.0f}% of the {result['peak_precision']} peak",
            flush=True,
        )

    record("naive", _paper_size_model(NaiveDecoder), fixed)
    with dtype_policy(default_precision):
        record(f"sat_tf default ({default_precision})", _paper_size_model(), fixed, precision=default_precision)
    record("+precomputed attention projection", _paper_size_model(NaiveDecoder, precompute_projection=True), fixed)
    record("+hoisted output layer", _paper_size_model(UnfusedDecoder), fixed)
    record("+fused gates (sat_tf)", _paper_size_model(), fixed)
    record("sat_tf +jit_compile", _paper_size_model(), fixed, jit_compile=True)
    record("sat_tf batch 128", _paper_size_model(), fixed128)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        record("sat_tf mixed_bfloat16", _paper_size_model(), fixed, precision="mixed_bfloat16")
        record("sat_tf mixed_bfloat16 batch 128", _paper_size_model(), fixed128, precision="mixed_bfloat16")
    except Exception as error:  # noqa: BLE001 - reported, not hidden
        results["paper_size"]["sat_tf mixed_bfloat16"] = {"error": str(error)[:300]}
    finally:
        keras.mixed_precision.set_global_policy("float32")

    # Bucketing: the same Flickr8k-like captions, padded to each batch's longest vs. sorted into
    # buckets of similar length (what `bucket_by_length` does in the input pipeline).
    lengths = _flickr_like_lengths(rng, 64 * 8)
    padded = [_feature_batch(rng, 64, lengths[i : i + 64]) for i in range(0, len(lengths), 64)]
    ordered = np.sort(lengths)
    bucketed = [_feature_batch(rng, 64, ordered[i : i + 64]) for i in range(0, len(ordered), 64)]
    mean_targets = float(lengths.mean())
    model = _paper_size_model()
    for name, batches in (("flickr lengths, padded", padded), ("flickr lengths, bucketed", bucketed)):
        result = _with_fraction(measure(model, batches, 2 * len(batches)), peaks, "float32", mean_targets)
        results["paper_size"][name] = result
        print(f"{name:32s} {result['tokens_per_second']:7.0f} tok/s", flush=True)

    demo = resolve_run_config("shapes-demo")
    tokenizer = CaptionTokenizer([f"w{i}" for i in range(21)])
    batch_size, image_size = demo.training.batch_size, demo.model.image_size
    demo_tokens = rng.integers(4, tokenizer.vocabulary_size, size=(batch_size, 11)).astype(np.int32)
    demo_tokens[:, 0], demo_tokens[:, -1] = 1, 2
    demo_batch = {
        "images": tf.constant(rng.integers(0, 256, (batch_size, image_size, image_size, 3)), tf.uint8),
        "tokens": tf.constant(demo_tokens),
    }
    results["demo_model"] = measure(build_captioner(demo.model, tokenizer), [demo_batch], args.steps)
    naive, default = results["paper_size"]["naive"], results["paper_size"][f"sat_tf default ({default_precision})"]
    results["summary"] = {
        "default_over_naive": default["tokens_per_second"] / naive["tokens_per_second"],
        "default_fraction_of_peak": default["fraction_of_peak"],
        "default_peak_precision": default["peak_precision"],
        "amx_kernels": kernels["amx"],
    }
    print(json.dumps(results, indent=2))
    print(
        f"sat_tf default ({default_precision}): {results['summary']['default_over_naive']:.2f}x the naive decoder, "
        f"{100 * default['fraction_of_peak']:.0f}% of the {default['peak_precision']} matmul peak "
        f"({default['useful_gflops']:.0f} of {peaks[default['peak_precision']]:.0f} GFLOP/s); "
        f"AMX kernels: {kernels['amx']}"
    )
    write_json_atomic(args.output, results)


if __name__ == "__main__":
    main()
