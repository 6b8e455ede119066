"""Running a frozen encoder once over a dataset into a `FeatureCache`."""

from __future__ import annotations

import hashlib
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from sat_tf.data.feature_cache import CacheIdentity, FeatureCache, extract_features, list_checksum
from sat_tf.data.images import load_image, resize_image
from sat_tf.data.photo_views import ORIGINAL, PhotoView
from sat_tf.models.encoder import Encoder


def encoder_identity(encoder: Encoder, image_paths: Sequence[str], view: PhotoView | None = None) -> CacheIdentity:
    """What a cache made by `encoder` over `image_paths` (seen through `view`) is checked against."""
    if not encoder.built:
        encoder.build((None, encoder.image_size, encoder.image_size, 3))
    digest = hashlib.sha256()
    for weight in encoder.cached_part_weights:  # values and shapes only: layer paths differ between instances
        value = np.ascontiguousarray(weight.numpy())
        digest.update(str(value.shape).encode("utf-8"))
        digest.update(value.tobytes())
    return CacheIdentity(
        encoder=encoder.feature_config(),
        encoder_fingerprint=digest.hexdigest(),
        images_checksum=list_checksum(image_paths),
        num_images=len(image_paths),
        photo_view=None if view is None or view.name == ORIGINAL else view.name,
    )


def extract_to_cache(
    encoder: Encoder,
    image_paths: Sequence[str],
    cache_dir: str | os.PathLike,
    batch_size: int = 32,
    shard_size: int = 1024,
    verbose: bool = True,
    settings: dict | None = None,
    view: PhotoView | None = None,
) -> FeatureCache:
    """Extracts (or resumes extracting) features of every image, seen through `view` when given
    (a training augmentation, `sat_tf.data.photo_views`); returns the complete cache.

    Example:
        >>> encoder = Encoder("efficientnet_lite0", weights="imagenet")
        >>> cache = extract_to_cache(encoder, paths, "cache/flickr8k-lite0")
    """
    if not encoder.built:
        encoder.build((None, encoder.image_size, encoder.image_size, 3))
    if not encoder.can_cache:
        raise ValueError(
            "feature caching needs a frozen encoder, or one whose trainable part is its top blocks "
            "(fine_tune_top_blocks); a trainable backbone reads images instead"
        )
    identity = encoder_identity(encoder, image_paths, view)
    view = view or PhotoView()
    encode = tf.function(lambda images: encoder.cache_input(images, training=False), reduce_retracing=True)

    def load_batch(paths):
        return np.stack([resize_image(view.apply(load_image(p)), encoder.image_size) for p in paths])

    extract_features(
        lambda images: encode(tf.constant(images)).numpy(),
        load_batch,
        list(image_paths),
        cache_dir,
        identity,
        batch_size=batch_size,
        shard_size=shard_size,
        verbose=verbose,
        settings=settings,
    )
    return FeatureCache(cache_dir, identity)
