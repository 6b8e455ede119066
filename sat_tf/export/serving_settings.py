"""Settings a served model keeps beside its graph: what `sat-tf serve`'s page needs to know of the
model that the graph does not say (its "not sure" threshold). Light: no TensorFlow import, so the
server reads it without loading Keras."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sat_tf.inference.results import NOT_SURE_BELOW

# TF Serving's folder for files beside a SavedModel (it ignores what it does not know there).
SERVING_SETTINGS_FILE = "assets.extra/sat_tf.json"


def write_serving_settings(version_dir: str | os.PathLike, settings: dict) -> Path:
    """Writes `settings` (JSON-ready) into the version folder, which is still being staged."""
    path = Path(version_dir) / SERVING_SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))
    return path


def serving_settings(version_dir: str | os.PathLike) -> dict:
    """The settings `write_serving_settings` kept, over the library's defaults (an export made
    before these existed gets the defaults).

    Example:
        >>> serving_settings("serving/sat_tf/1")["not_sure_below"]
        0.62
    """
    settings = {"not_sure_below": NOT_SURE_BELOW}
    path = Path(version_dir) / SERVING_SETTINGS_FILE
    if path.is_file():
        settings.update(json.loads(path.read_text()))
    return settings
