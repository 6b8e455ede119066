"""Where a model's confidence calibration is kept: the `confidence_calibration` key of a preset's
config.json, or `confidence_calibration.json` in a run folder (beside its `.keras` files). Read
through `sat_tf.workflows.model_reference.resolve_model`; written by `save_calibration`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sat_tf.errors import ConfigError
from sat_tf.models.preset import CONFIG_FILE, is_preset_folder
from sat_tf.utils.atomic import write_json_atomic
from sat_tf_edge.calibration import CalibrationError, ConfidenceCalibration

CALIBRATION_FILE = "confidence_calibration.json"


def preset_calibration(info: dict, reference: str | os.PathLike) -> ConfidenceCalibration | None:
    """The calibration in a preset's config.json (`info`), or None."""
    stored = info.get("confidence_calibration")
    return None if stored is None else _parsed(stored, f"preset {reference}")


def run_calibration(folder: str | os.PathLike) -> ConfidenceCalibration | None:
    """The calibration of a run folder (`confidence_calibration.json`), or None."""
    file = Path(folder) / CALIBRATION_FILE
    if not file.is_file():
        return None
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{file}: not a JSON file ({exc})") from None
    return _parsed(values, str(file))


def _parsed(values, where: str) -> ConfidenceCalibration:
    try:
        return ConfidenceCalibration.from_json(values, where)
    except CalibrationError as exc:  # the user's file: a clear error, not a traceback
        raise ConfigError(str(exc)) from None


def save_calibration(reference: str | os.PathLike, calibration: ConfidenceCalibration) -> Path:
    """Keeps a calibration beside its model (atomically): in a preset folder's config.json (with
    its "not sure" threshold), or as a run folder's `confidence_calibration.json`. Returns the file
    written."""
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
