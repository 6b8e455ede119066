"""One way from a model reference to what it names: `resolve_model` turns a preset name, a preset
folder, a run folder or a `.keras` file into a `ResolvedModel` (the file to load, the settings it was
trained with, its decoding settings and its confidence calibration), reading each file once;
`ResolvedModel.load` then loads the weights. Captioning, evaluation, export and serving all start
here (`sat_tf.workflows.caption.load_for_captioning`).

Example:
    >>> resolved = resolve_model("runs/my_run")    # run_config.json and the calibration, read once
    >>> resolved.decoding.beam_size, resolved.calibration is not None
    >>> model = resolved.load()
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from sat_tf.inference.decoding_config import DecodingConfig
from sat_tf.models.captioner import Captioner
from sat_tf.models.preset import PresetError, load_preset, preset_info
from sat_tf.workflows.calibration_store import preset_calibration, run_calibration
from sat_tf.workflows.models import ModelLoadError, is_preset, load_captioner, model_file
from sat_tf.workflows.run_config import RUN_CONFIG_FILE, RunConfig, read_json_file
from sat_tf_edge.calibration import ConfidenceCalibration


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """What a model reference names.

    Args:
        reference: as given.
        model_file: the `.keras` file to load, or the preset's name or folder.
        preset: a preset's config.json (None for a trained model).
        run_config: the settings it was trained with (a preset: its decoding settings only; None
            for a `.keras` file outside a run folder).
        calibration: its confidence calibration, or None.
    """

    reference: str
    model_file: Path
    preset: dict | None
    run_config: RunConfig | None
    calibration: ConfidenceCalibration | None

    @property
    def decoding(self) -> DecodingConfig | None:
        """The model's own decoding settings (None: the library's defaults apply)."""
        return self.run_config.decoding if self.run_config is not None else None

    def load(self) -> Captioner:
        """The captioner, with its weights (a `ModelLoadError` names what is wrong)."""
        if self.preset is None:
            return load_captioner(self.model_file)
        try:
            return load_preset(self.reference, info=self.preset)
        except PresetError as exc:
            raise ModelLoadError(str(exc)) from None


def resolve_model(reference: str | os.PathLike) -> ResolvedModel:
    """Resolves a model reference (see the module docstring); raises `ModelLoadError` for a path
    that holds no model and `ConfigError` for a malformed calibration file."""
    if is_preset(reference):
        try:
            info = preset_info(str(reference))
        except PresetError as exc:
            raise ModelLoadError(str(exc)) from None
        own = RunConfig.from_dict({"decoding": info["decoding"]}, f"preset {reference}")
        return ResolvedModel(str(reference), Path(reference), info, own, preset_calibration(info, reference))
    file = model_file(reference)
    folder = file.parent
    settings = folder / RUN_CONFIG_FILE
    trained = RunConfig.from_dict(read_json_file(settings), str(settings)) if settings.is_file() else None
    return ResolvedModel(str(reference), file, None, trained, run_calibration(folder))
