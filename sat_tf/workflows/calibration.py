"""Calibrating a model's confidence from settings: what `sat-tf calibrate` runs.

The model captions its dev photos as `sat-tf caption` does, the signals of each caption are
measured (`sat_tf_edge.calibration`), the photo novelty is measured against h0 of a sample of its
training photos, and a calibration is fitted (`sat_tf.evaluation.calibration.fit_calibration`). It
is kept beside the model: `confidence_calibration.json` in a run folder, the `confidence_calibration`
key of a preset's config.json; `load_for_captioning` reads it, exports carry it.

Example:
    >>> loaded = load_for_captioning(["runs/my_run"])
    >>> fitted = calibrate_captioner(loaded, {"dev": validation_data}, training_photo_paths)
    >>> save_calibration("runs/my_run", fitted.calibration)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from sat_tf.data.images import load_image
from sat_tf.data.sources import DataConfig, load_captions
from sat_tf.evaluation.calibration import (
    PROMISED_SHARE_GOOD,
    FittedCalibration,
    fit_calibration,
    fit_photo_novelty,
    good_captions,
    per_photo_cider,
)
from sat_tf.inference import CaptionCandidates
from sat_tf.inference.generate import photo_states
from sat_tf.models.imagenet_tagger import Tag
from sat_tf.workflows.calibration_store import CALIBRATION_FILE, save_calibration
from sat_tf.workflows.caption import decode_with_tags

CHUNK = 64  # photos read and decoded at a time (a 448-px photo is 2.4 MB as float32)


def photo_states_of_files(model, paths: Sequence[str]) -> np.ndarray:
    """float32 [N, H]: h0 of each photo file, read a chunk at a time."""
    size = model.members()[0].encoder.image_size
    parts = [
        photo_states(model, np.stack([load_image(p, size) for p in paths[start : start + CHUNK]]))
        for start in range(0, len(paths), CHUNK)
    ]
    return np.concatenate(parts)


@dataclasses.dataclass
class DevSetCaptions:
    """A dev set captioned as `sat-tf caption` does: the candidates, the tags, each caption's CIDEr-D."""

    candidates: CaptionCandidates
    tags: list[list[Tag]] | None
    cider: np.ndarray


def caption_dev_set(loaded, data: DataConfig) -> DevSetCaptions:
    """Captions every photo of a split (a chunk at a time) and scores each caption."""
    model = loaded.model
    captions = load_captions(data, model.members()[0].encoder.image_size, verbose=False)
    size = model.members()[0].encoder.image_size
    parts, tags = [], []
    for start in range(0, len(captions.image_paths), CHUNK):
        images = np.stack([load_image(p, size) for p in captions.image_paths[start : start + CHUNK]])
        candidates, chunk_tags, _ = decode_with_tags(model, loaded.decoding, images)
        parts.append(candidates)
        tags += chunk_tags or []
    candidates = parts[0] if len(parts) == 1 else CaptionCandidates.concatenate(parts)
    return DevSetCaptions(candidates, tags or None, per_photo_cider(candidates.best_texts, captions))


def calibrate_captioner(
    loaded,
    dev_sets: dict[str, DataConfig],
    training_photos: Sequence[str],
    share_good: float = PROMISED_SHARE_GOOD,
    novelty_components: int = 16,
) -> FittedCalibration:
    """Fits a model's calibration on its dev sets (see the module docstring).

    Args:
        loaded: a `LoadedCaptioner` (the model and the decoding settings it captions with).
        dev_sets: name -> a split with captions; each is its own "median caption" reference.
        training_photos: image files of the training photos the novelty is measured against.
        share_good: what the "not sure" threshold promises (`not_sure_threshold`).
        novelty_components: principal directions of the novelty's Gaussian.
    """
    novelty = fit_photo_novelty(photo_states_of_files(loaded.model, training_photos), novelty_components)
    end_id = loaded.model.tokenizer.end_id
    tables, groups, cider = [], [], []
    for name, data in dev_sets.items():
        captioned = caption_dev_set(loaded, data)
        tables.append(captioned.candidates.confidence_signals(novelty, end_id))
        groups += [name] * len(captioned.cider)
        cider.append(captioned.cider)
    table = {key: np.concatenate([t[key] for t in tables]) for key in tables[0]}
    group_array = np.array(groups)
    fitted = fit_calibration(table, good_captions(np.concatenate(cider), group_array), group_array, novelty)
    assert fitted.calibration is not None  # every candidate signal is one of SIGNALS
    return fitted


def training_photo_sample(data: DataConfig, count: int, image_size: int, seed: int = 0) -> list[str]:
    """Up to `count` photos of a run's training split, drawn with `seed`."""
    captions = load_captions(dataclasses.replace(data, split="train"), image_size, verbose=False).with_photos_only()
    paths = sorted(set(captions.image_paths))
    if len(paths) <= count:
        return paths
    return [paths[i] for i in sorted(np.random.default_rng(seed).choice(len(paths), count, replace=False))]


__all__ = [
    "CALIBRATION_FILE",
    "DevSetCaptions",
    "calibrate_captioner",
    "caption_dev_set",
    "photo_states_of_files",
    "save_calibration",
    "training_photo_sample",
]
