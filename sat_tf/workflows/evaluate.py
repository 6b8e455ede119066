"""Evaluation and feature extraction from settings: what `sat-tf evaluate` and `sat-tf extract`
run (captioning files is `sat_tf.workflows.caption`)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

from sat_tf.data.feature_cache import FeatureCache, StaleCacheError
from sat_tf.data.sources import CaptionData, DataConfig, decoder_inputs, load_captions
from sat_tf.errors import ConfigError
from sat_tf.evaluation.grounding import attention_grounding, coco_object_masks
from sat_tf.evaluation.metrics import caption_metrics
from sat_tf.inference.decoding_config import DecodingConfig
from sat_tf.inference.features import encoder_identity, extract_to_cache
from sat_tf.models.config import ModelConfig
from sat_tf.utils.atomic import write_json_atomic
from sat_tf.workflows.caption import decode
from sat_tf.workflows.features import encoder_settings_record
from sat_tf.workflows.model_reference import resolve_model
from sat_tf.workflows.models import as_one_captioner
from sat_tf.workflows.train import validation_data_config


def default_evaluation_data(model_path: str | os.PathLike) -> DataConfig | None:
    """The validation split of the run that trained the model (with its feature cache folder),
    so `sat-tf evaluate --model RUN` scores the data the run selected on."""
    resolved = resolve_model(model_path)
    config = resolved.run_config
    if config is None or resolved.preset is not None:
        return None
    data = validation_data_config(config)
    if data is not None and data.feature_cache == "auto":
        folder = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
        data = dataclasses.replace(data, feature_cache=str(folder / "features" / "validation"))
    return data


def images_or_features(model, data: CaptionData, feature_cache: str | None) -> dict:
    """{"features": ...} read from a cache checked against every member's encoder, or {"images": ...}
    (also for an ensemble whose members' encoders do not all match the cache)."""
    members = model.members()
    if feature_cache is not None:
        try:
            caches = [FeatureCache(feature_cache, encoder_identity(m.encoder, data.image_paths)) for m in members]
            return decoder_inputs(caches[0], members[0].encoder.image_size)
        except StaleCacheError:
            if len(members) == 1:
                raise
    return decoder_inputs(data.images, members[0].encoder.image_size)


def evaluate_captioner(
    model_paths: Sequence[str],
    data: DataConfig,
    decoding: DecodingConfig,
    tokenization: str = "auto",
    output: str | os.PathLike | None = None,
    verbose: bool = True,
    instances: str | os.PathLike | None = None,
) -> dict:
    """Decodes a split and scores it with coco-caption's metrics (0-100), and with `instances`
    where its attention lands (`sat_tf.evaluation.grounding`).

    Args:
        model_paths: one model (file or run folder), or several for an ensemble.
        data: the split to score (reads `data.feature_cache` when set).
        decoding: strategy and limits.
        tokenization: "auto", "ptb" or "python" (see `caption_metrics`).
        output: also write the report (scores, models, decoding, image count, every caption) as JSON.
        instances: a COCO instances JSON of the split's photos (matched by file name): adds
            "grounding", the attention measures of the caption words that name an annotated object.

    Returns:
        The report: the metrics at the top level, plus "models", "decoding", "images", "captions"
        and each caption's "confidence" (calibrated when the model has a calibration, as
        "confidence_kind" says) and "not_sure" flag, as `sat-tf caption` gives them.
    """
    resolved = [resolve_model(path) for path in model_paths]
    model = as_one_captioner([r.load() for r in resolved])
    members = model.members()
    captions = load_captions(data, members[0].encoder.image_size, verbose=verbose)
    inputs = images_or_features(model, captions, data.feature_cache)
    candidates = decode(model, decoding, **inputs)
    best = candidates.best()
    calibration = resolved[0].calibration if len(resolved) == 1 else None
    confidence = candidates.confidence(calibration, model.tokenizer.end_id).tolist()
    hypotheses = dict(zip(captions.image_ids, best.texts))
    scores = caption_metrics(captions.references(), hypotheses, tokenization=tokenization)
    report = {
        **scores,
        "models": [str(r.model_file) for r in resolved],
        "decoding": dataclasses.asdict(decoding),
        "images": len(captions),
        "data": dataclasses.asdict(data),
        "captions": hypotheses,
        "confidence_kind": "token probability" if calibration is None else "calibrated",
        "confidence": dict(zip(captions.image_ids, confidence)),
        "not_sure": {image: value < decoding.not_sure_below for image, value in zip(captions.image_ids, confidence)},
    }
    if instances is not None:
        objects = coco_object_masks(str(instances), [Path(p).name for p in captions.image_paths])
        grounding = attention_grounding([t.split() for t in best.texts], best.alphas, objects, members[0].feature_grid)
        report["grounding"] = {key: value for key, value in grounding.items() if key != "words"}
    if output:
        write_json_atomic(output, report)
    return report


def extract_split_features(
    model: ModelConfig,
    data: DataConfig,
    cache_dir: str | os.PathLike,
    batch_size: int = 32,
    shard_size: int = 1024,
    verbose: bool = True,
) -> FeatureCache:
    """Caches a frozen encoder's features of a split (resumable); records the encoder settings so
    that `sat-tf train --feature-cache` rebuilds the same encoder."""
    if data.is_synthetic:
        raise ConfigError("extract needs a caption file (--captions): generated data is made on the fly")
    encoder = model.build_encoder()
    captions = load_captions(data, encoder.image_size, verbose=verbose)
    if verbose:
        print(f"extracting features of {len(captions)} images", file=sys.stderr)
    return extract_to_cache(
        encoder,
        captions.image_paths,
        cache_dir,
        batch_size=batch_size,
        shard_size=shard_size,
        verbose=verbose,
        settings=encoder_settings_record(model, encoder),
    )
