"""The fast path's TFLite pair: a shipped preset exported once (float32, so it captions as the
library does, token for token, with the same confidence) into the cache `sat_tf.utils.edge_cache`
names, for `sat-tf caption` to run without TensorFlow next time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sat_tf.errors import ConfigError
from sat_tf.export.tflite import export_tflite
from sat_tf.models import efficientnet_lite
from sat_tf.utils.atomic import atomic_path
from sat_tf.utils.edge_cache import preset_pair_dir
from sat_tf.workflows.caption import LoadedCaptioner


def export_float32_pair(loaded: LoadedCaptioner, folder: str | os.PathLike) -> None:
    """Writes `loaded`'s float32 TFLite pair (with its ImageNet classifier where the encoder has
    one, its decoding settings and calibration) to `folder`: captions as the library's."""
    (model,) = loaded.model.members()
    decoding = loaded.decoding
    export_tflite(
        model, folder, "fp32", "fp32", None, decoding.max_length, decoding=decoding.edge_settings(),
        calibration=loaded.calibration,
    )  # fmt: skip


def pair_for(references: Sequence[str], loaded: LoadedCaptioner, scratch: str | os.PathLike) -> Path:
    """The float32 pair that captions as `loaded` does: a shipped preset's cached one (built once),
    or one exported to `scratch`.

    Raises:
        ConfigError: an ensemble or tag-guided decoding, which a TFLite pair cannot run.
    """
    members = loaded.model.members()
    tagged = loaded.decoding.tag_guidance != "off" and members[0].encoder.backbone_name in efficientnet_lite.VARIANTS
    if len(members) != 1 or tagged:  # (a model without the ImageNet classifier decodes untagged anyway)
        raise ConfigError("a TFLite pair runs one model without tag guidance: not an ensemble or --tag-guidance")
    if len(references) == 1 and (folder := prepare_fast_path(references[0], loaded)) is not None:
        return folder
    export_float32_pair(loaded, scratch)
    return Path(scratch)


def prepare_fast_path(preset: str, loaded: LoadedCaptioner) -> Path | None:
    """Exports `loaded` (the shipped preset `preset`, as `sat-tf caption` loads it) to its cache
    folder unless it is there; returns the folder (None for a model that is not a shipped preset).
    Written atomically: a killed export leaves no pair that later loads."""
    folder = preset_pair_dir(preset)
    if folder is None or folder.is_dir():
        return folder
    with atomic_path(folder) as tmp:
        export_float32_pair(loaded, tmp)
    return folder
