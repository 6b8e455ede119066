"""The fast path's TFLite pair: a shipped preset exported once (float32, so it captions as the
library does, token for token, with the same confidence) into the cache `sat_tf.utils.edge_cache`
names, for `sat-tf caption` to run without TensorFlow next time."""

from __future__ import annotations

from pathlib import Path

from sat_tf.export.tflite import export_tflite
from sat_tf.utils.atomic import atomic_path
from sat_tf.utils.edge_cache import preset_pair_dir
from sat_tf.workflows.caption import LoadedCaptioner


def prepare_fast_path(preset: str, loaded: LoadedCaptioner) -> Path | None:
    """Exports `loaded` (the shipped preset `preset`, as `sat-tf caption` loads it) to its cache
    folder unless it is there; returns the folder (None for a model that is not a shipped preset).
    Written atomically: a killed export leaves no pair that later loads."""
    folder = preset_pair_dir(preset)
    if folder is None or folder.is_dir():
        return folder
    (model,) = loaded.model.members()
    decoding = loaded.decoding
    with atomic_path(folder) as tmp:
        export_tflite(
            model,
            tmp,
            "fp32",
            "fp32",
            None,
            decoding.max_length,
            decoding=decoding.edge_settings(),
            calibration=loaded.calibration,
            tags=True,
        )
    return folder
