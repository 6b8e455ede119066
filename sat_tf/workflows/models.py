"""Loading trained captioners: a `.keras` file, a training run folder, or a shipped preset's name."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import sat_tf.models  # noqa: F401  (registers the custom classes)
from sat_tf.errors import SatTfError
from sat_tf.inference.ensemble import CaptionerEnsemble
from sat_tf.models.captioner import Captioner
from sat_tf.models.preset import PresetError, is_preset_folder, load_preset, preset_names
from sat_tf.utils.atomic import atomic_path

MODEL_FILES = ("best_model.keras", "model.keras")  # in a run folder, in order of preference


class ModelLoadError(SatTfError, ValueError):
    """A model path does not hold a loadable sat_tf captioner."""


def model_file(path: str | os.PathLike) -> Path:
    """The model file of `path`: itself, or in a run folder the model selected on validation
    (`best_model.keras`), else the last epoch's (`model.keras`); a preset (name or folder) is
    its own reference."""
    if is_preset(path):
        return Path(path)
    path = Path(path)
    if path.is_dir():
        for name in MODEL_FILES:
            if (path / name).is_file():
                return path / name
        raise ModelLoadError(f"{path}: model file not found (no {' or '.join(MODEL_FILES)} in this folder)")
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    return path


def is_preset_reference(reference: str | os.PathLike) -> bool:
    """A model reference names a shipped preset when no file or folder of that name exists."""
    return not Path(reference).exists() and str(reference) in preset_names()


def is_preset(reference: str | os.PathLike) -> bool:
    """A shipped preset's name or a preset folder (`sat_tf.models.preset.save_preset`)."""
    return is_preset_reference(reference) or is_preset_folder(reference)


def load_captioner(path: str | os.PathLike) -> Captioner:
    """Loads a trained captioner: a `.keras` file, a run folder (see `model_file`), or the name
    of a shipped preset (`sat_tf.models.preset.preset_names()`)."""
    if is_preset(path):
        try:
            return load_preset(str(path))
        except PresetError as exc:
            raise ModelLoadError(str(exc)) from None
    path = model_file(path)
    try:
        model = keras.saving.load_model(path)
    except Exception as exc:  # Keras raises many types for damaged archives
        raise ModelLoadError(f"{path}: not a loadable sat_tf model ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, Captioner):
        raise ModelLoadError(f"{path}: holds a {type(model).__name__}, not a sat_tf Captioner")
    return model


def initialize_from(model: Captioner, source: Captioner, where: str | os.PathLike) -> Captioner:
    """Copies `source`'s encoder weights and decoder parameters into `model` and returns it.

    The two must share the layer sizes; the attention mode and the loss settings may differ (a
    hard-attention model starting from a trained soft one, for example). The vocabularies may
    differ too (a run whose vocabulary grew with new data): the embedding rows and output
    columns of the words both know are copied, a new word keeps its fresh initialisation. The
    decoder's "no photo" annotation is copied where both have one. Mismatches raise a
    `ModelLoadError` naming `where` and the first differing weight."""
    rows = _shared_word_rows(model.tokenizer.vocabulary, source.tokenizer.vocabulary)
    theirs_decoder = _decoder_parameters(source)
    mine_decoder = _decoder_parameters(model)
    if len(source.encoder.weights) != len(model.encoder.weights) or len(theirs_decoder) != len(mine_decoder):
        raise ModelLoadError(f"{where}: its encoder or decoder has other layers than the run's model")
    by_vocabulary = _vocabulary_axes(model)
    for theirs, mine in [*zip(source.encoder.weights, model.encoder.weights), *zip(theirs_decoder, mine_decoder)]:
        axis = by_vocabulary.get(id(mine))
        _require_matching_shape(mine, theirs, where, vocabulary_axis=axis)
        if axis is None:
            mine.assign(theirs)
            continue
        value = mine.numpy()
        known = rows >= 0
        np.moveaxis(value, axis, 0)[known] = np.moveaxis(theirs.numpy(), axis, 0)[rows[known]]
        mine.assign(value)
    blank_theirs, blank_mine = (getattr(m.decoder, "no_photo_annotation", None) for m in (source, model))
    if blank_theirs is not None and blank_mine is not None:
        blank_mine.assign(blank_theirs)
    return model


def _decoder_parameters(model: Captioner) -> list:
    """The decoder's trainable weights in build order, with the "no photo" annotation (which only
    some decoders have) left out; it is copied separately when both models have one."""
    decoder = model.decoder
    extra = getattr(decoder, "no_photo_annotation", None)
    return [w for w in decoder.trainable_weights if w is not extra]


def _vocabulary_axes(model: Captioner) -> dict[int, int]:
    """id(weight) -> its vocabulary axis, for the weights with one row or column per word."""
    decoder = model.decoder
    return {
        id(decoder.embedding.embeddings): 0,
        id(decoder.output_projection.kernel): 1,
        id(decoder.output_projection.bias): 0,
    }


def _shared_word_rows(mine: list[str], theirs: list[str]) -> np.ndarray:
    """For each word of `mine`, its row in `theirs` (-1 when `theirs` lacks it); the special
    tokens come first in every vocabulary, so they always map to themselves."""
    index = {word: row for row, word in enumerate(theirs)}
    return np.asarray([index.get(word, -1) for word in mine])


def _require_matching_shape(mine, theirs, where, vocabulary_axis: int | None = None) -> None:
    """`theirs` must have `mine`'s shape, but for the length of the vocabulary axis, if any."""
    expected = list(mine.shape)
    if vocabulary_axis is not None:
        expected[vocabulary_axis] = theirs.shape[vocabulary_axis]
    if tuple(theirs.shape) != tuple(expected):
        raise ModelLoadError(
            f"{where}: weight '{theirs.path}' has shape {tuple(theirs.shape)}, the run's model "
            f"needs {tuple(mine.shape)} (the model settings differ)"
        )


def save_captioner(model: Captioner, path: str | os.PathLike) -> Path:
    """Saves `model` as a `.keras` file atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def average_checkpoints(model_path: str | os.PathLike, checkpoints: list[str | os.PathLike]) -> Captioner:
    """The model of `model_path` with every floating-point weight replaced by its mean over the
    training checkpoints `checkpoints` (prefixes such as `run/checkpoints/ckpt-2000`) of the same
    run: checkpoint averaging (Vaswani et al. 2017), an ensemble of nearby weights at the cost of one
    model. Integer state (random-generator seeds) comes from the last checkpoint.

    Raises `ModelLoadError` naming the checkpoint that is missing or does not fit the model."""
    if not checkpoints:
        raise ModelLoadError("average_checkpoints: no checkpoints given")
    model = load_captioner(model_path)
    averaged = [v for v in model.weights if keras.backend.is_float_dtype(v.dtype)]
    sums = [np.zeros(v.shape, np.float64) for v in averaged]
    for prefix in checkpoints:
        try:
            status = tf.train.Checkpoint(model=model).restore(str(prefix))
            status.expect_partial().assert_existing_objects_matched()
        except (tf.errors.NotFoundError, tf.errors.DataLossError, AssertionError, ValueError) as exc:
            raise ModelLoadError(
                f"{prefix}: not a checkpoint of {model_path}'s model ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        for total, variable in zip(sums, averaged):
            total += variable.numpy()
    for total, variable in zip(sums, averaged):
        variable.assign((total / len(checkpoints)).astype(variable.dtype))
    return model


def load_captioners(paths) -> Captioner | CaptionerEnsemble:
    """One captioner, or a `CaptionerEnsemble` of several (same vocabulary)."""
    return as_one_captioner([load_captioner(p) for p in paths])


def as_one_captioner(models: list[Captioner]) -> Captioner | CaptionerEnsemble:
    """The model itself, or an ensemble of several; a vocabulary mismatch is a `ModelLoadError`."""
    if len(models) == 1:
        return models[0]
    try:
        return CaptionerEnsemble(models)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
