"""Training precision: float32, or Keras mixed precision (bfloat16/float16 compute, float32 weights).

"auto" picks mixed_bfloat16 where the hardware computes bfloat16 natively (a CPU with AVX512-BF16
or AMX, a GPU of compute capability 8.0 or newer) and float32 elsewhere. Saved models are always
float32 (`float32_layers`), so inference and export never depend on the training precision.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras
import tensorflow as tf

from sat_tf.errors import ConfigError
from sat_tf.training.config import PRECISIONS
from sat_tf.utils.cpu import cpu_flags


def cpu_supports_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU flags list native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def gpus_support_bfloat16() -> bool | None:
    """True/False when GPUs are visible (all of compute capability >= 8.0?), None without GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) for gpu in gpus]
    return all(tuple(c) >= (8, 0) for c in capabilities)


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy name for a `precision` setting ("auto" decided by the hardware)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"training.precision must be one of {', '.join(PRECISIONS)}; got '{precision}'")
    if precision != "auto":
        return precision
    gpus = gpus_support_bfloat16()
    native = cpu_supports_bfloat16() if gpus is None else gpus
    return "mixed_bfloat16" if native else "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to `name` while layers are built, then restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def float32_layers(model: keras.Model):
    """Every layer of `model` computes in float32 inside the block (to save a float32 model),
    and returns to its policy after. The weights are float32 under every policy."""
    layers = [model, *model._flatten_layers(include_self=False)]
    policies = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = "float32"
        yield model
    finally:
        for layer, policy in zip(layers, policies):
            layer.dtype_policy = policy
