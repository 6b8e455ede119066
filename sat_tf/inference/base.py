"""What every caption decoder shares: the model, a length limit, and images-or-features input."""

from __future__ import annotations

import tensorflow as tf

from sat_tf.models.captioner import Captioner


class CaptionDecoderBase:
    """Holds the model and turns `images=` or `features=` into region features.

    Args:
        model: a trained `Captioner`.
        max_length: most tokens per caption, `<end>` included.
        jit_compile: compile the decoding loop with XLA. A step is a few small ops, so without it
            per-op dispatch dominates on CPU; with it, each new batch size compiles once (seconds).
    """

    def __init__(self, model: Captioner, max_length: int, jit_compile: bool = True):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.model = model
        self.max_length = max_length
        self.jit_compile = jit_compile
        self._encode_images = tf.function(self._encode, reduce_retracing=True)

    def _encode(self, images):
        return self.model.encode(images, training=False)

    def region_features(self, images=None, features=None) -> tf.Tensor:
        """Features [B, L, D] from images [B, H, W, 3] (0..255) or given features."""
        if (images is None) == (features is None):
            raise ValueError("pass exactly one of images= or features=")
        if features is None:
            return self._encode_images(tf.convert_to_tensor(images))
        return tf.convert_to_tensor(features, tf.float32)
