"""Images or cached features for a split: the one place a workflow decides which it reads."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from sat_tf.data.feature_cache import FeatureCache, cache_settings
from sat_tf.data.photo_views import ORIGINAL, PhotoView, ViewedFeatures, ViewedPhotos
from sat_tf.data.sources import CaptionData
from sat_tf.errors import ConfigError
from sat_tf.inference.features import encoder_identity, extract_to_cache
from sat_tf.models.config import ENCODER_FEATURE_SETTINGS, ModelConfig
from sat_tf.models.encoder import Encoder

AUTO = "auto"


def cache_folder(setting: str | None, output_dir: str | os.PathLike | None, split: str) -> Path | None:
    """The cache folder a `feature_cache` setting names: a path, or "auto" under the run folder."""
    if setting is None:
        return None
    if setting == AUTO:
        if output_dir is None:
            raise ConfigError('feature_cache "auto" needs a run folder (output_dir)')
        return Path(output_dir) / "features" / split
    return Path(setting)


def model_config_for_cache(model: ModelConfig, cache_dir: str | os.PathLike | None) -> ModelConfig:
    """Takes the encoder settings from an existing cache's manifest, so a run reads its features
    with the encoder that made them. A setting given explicitly (not the default) that differs
    from the cache's is an error naming it."""
    if cache_dir is None or not (Path(cache_dir) / "manifest.json").is_file():
        return model
    recorded = cache_settings(cache_dir)
    if not recorded:
        return model
    defaults = ModelConfig()
    changes = {}
    for name in ENCODER_FEATURE_SETTINGS:
        if name not in recorded:
            continue
        value = tuple(recorded[name]) if name == "cnn_filters" else recorded[name]
        current = getattr(model, name)
        if current != value and current != getattr(defaults, name):
            raise ConfigError(
                f"model.{name} is {current!r} but the feature cache {cache_dir} was made with "
                f"{value!r}; leave {name} unset to use the cache's, or extract a new cache"
            )
        changes[name] = value
    return dataclasses.replace(model, **changes)  # type: ignore[arg-type]  # values checked above


def encoder_settings_record(model: ModelConfig, encoder: Encoder) -> dict:
    """What a cache records so that a run can rebuild its encoder (`model_config_for_cache`)."""
    return {**model.encoder_settings(), "image_size": encoder.image_size}


def features_source(
    data: CaptionData,
    encoder: Encoder,
    model: ModelConfig,
    cache_setting: str | None,
    output_dir: str | os.PathLike | None,
    split: str,
    verbose: bool = True,
    views: Sequence[PhotoView] = (),
    seed: int = 0,
):
    """A `FeatureCache` of the split's images when a cache is set, else the images themselves.

    A cache folder that does not exist yet (or whose extraction was interrupted) is filled first,
    resumably; an existing one is checked against the encoder and the image list. With more than
    one photo view (training augmentation), every view is read: a cache per view
    (`<cache>@<view>`, the original's is the cache itself) as `ViewedFeatures`, or the images as
    `ViewedPhotos`; `seed` seeds the draws."""
    folder = cache_folder(cache_setting, output_dir, split)
    views = list(views) or [PhotoView()]
    if folder is None:
        return data.images if len(views) == 1 else ViewedPhotos(data.images, views, seed)
    caches = [_view_cache(data, encoder, model, view_folder(folder, view), view, verbose) for view in views]
    return caches[0] if len(caches) == 1 else ViewedFeatures(caches, seed)


def view_folder(folder: Path, view: PhotoView) -> Path:
    """Where a photo view's features are cached: beside the photos' own (`<cache>@<view>`)."""
    return folder if view.name == ORIGINAL else folder.with_name(f"{folder.name}@{view.name}")


def _view_cache(data: CaptionData, encoder: Encoder, model: ModelConfig, folder: Path, view: PhotoView, verbose):
    paths = data.image_paths
    if not _is_complete(folder):
        if verbose and view.name != ORIGINAL:
            print(f"extracting the photos' {view.name} view into {folder}", file=sys.stderr, flush=True)
        settings = encoder_settings_record(model, encoder)
        return extract_to_cache(encoder, paths, folder, verbose=verbose, settings=settings, view=view)
    return FeatureCache(folder, encoder_identity(encoder, paths, view))


def _is_complete(folder: Path) -> bool:
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("complete"))
    except ValueError:
        return True  # let FeatureCache report the damaged manifest
