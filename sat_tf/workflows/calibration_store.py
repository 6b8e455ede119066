"""Where a model's confidence calibration is kept: the `confidence_calibration` key of a preset's
config.json, or `confidence_calibration.json` in a run folder (beside its `.keras` files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sat_tf.errors import ConfigError
from sat_tf.models.preset import CONFIG_FILE, is_preset_folder, preset_folder
from sat_tf.utils.atomic import write_json_atomic
from sat_tf.workflows.models import is_preset
from sat_tf_edge.calibration import CalibrationError, ConfidenceCalibration

CALIBRATION_FILE = "confidence_calibration.json"


def calibration_of(reference: str | os.PathLike, preset: dict | None = None) -> ConfidenceCalibration | None:
    """The calibration kept beside a model (None when it has none): a preset's config.json key, or a
    run folder's `confidence_calibration.json` (beside a `.keras` file)."""
    try:
        if preset is not None or is_preset(reference):
            info = preset if preset is not None else json.loads((preset_folder(reference) / CONFIG_FILE).read_text())
            stored = info.get("confidence_calibration")
            return None if stored is None else ConfidenceCalibration.from_json(stored, f"preset {reference}")
        path = Path(reference)
        file = (path if path.is_dir() else path.parent) / CALIBRATION_FILE
        if not file.is_file():
            return None
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CalibrationError(f"{file}: not a JSON file ({exc})") from None
        return ConfidenceCalibration.from_json(values, str(file))
    except CalibrationError as exc:  # the user's file: a clear error, not a traceback
        raise ConfigError(str(exc)) from None


def save_calibration(reference: str | os.PathLike, calibration: ConfidenceCalibration) -> Path:
    """Keeps a calibration beside its model (atomically): in a preset folder's config.json, or as a
    run folder's `confidence_calibration.json`. Returns the file written."""
    path = Path(reference)
    if is_preset_folder(path):
        file = path / CONFIG_FILE
        values = json.loads(file.read_text(encoding="utf-8"))
        values["confidence_calibration"] = calibration.to_json()
        values["decoding"]["not_sure_below"] = calibration.not_sure_below
        write_json_atomic(file, values)
        return file
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        raise ConfigError(f"{reference}: not a run folder, a .keras file in one, or a preset folder")
    file = folder / CALIBRATION_FILE
    write_json_atomic(file, calibration.to_json())
    return file
