"""Evaluation, captioning and feature extraction from settings: what `sat-tf evaluate`,
`sat-tf caption` and `sat-tf extract` run."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from sat_tf.data.feature_cache import FeatureCache, StaleCacheError
from sat_tf.data.images import ImageLoadError, load_image
from sat_tf.data.sources import CaptionData, DataConfig, load_captions
from sat_tf.errors import ConfigError
from sat_tf.evaluation.grounding import attention_grounding, coco_object_masks
from sat_tf.evaluation.metrics import caption_metrics
from sat_tf.inference import CaptionCandidates, CaptionerEnsemble, generate_captions
from sat_tf.inference.features import encoder_identity, extract_to_cache
from sat_tf.inference.tag_guidance import guided_captions
from sat_tf.models import efficientnet_lite
from sat_tf.models.config import ModelConfig
from sat_tf.models.imagenet_tagger import Tag, shared_tagger
from sat_tf.models.preset import preset_info
from sat_tf.utils.atomic import write_json_atomic
from sat_tf.workflows.features import encoder_settings_record
from sat_tf.workflows.models import is_preset, load_captioners, model_file
from sat_tf.workflows.run_config import RUN_CONFIG_FILE, DecodingConfig, RunConfig, read_json_file
from sat_tf.workflows.train import validation_data_config


def decode(model, decoding: DecodingConfig, images=None, features=None) -> CaptionCandidates:
    """Captions with the configured strategy (beam size, length penalty, `<unk>` filtering, tag
    guidance)."""
    if decoding.tag_guidance != "off":
        if images is None:
            raise ConfigError("decoding.tag_guidance needs images (the tagger reads pixels), not cached features")
        return decode_with_tags(model, decoding, images)[0]
    return generate_captions(model, images=images, features=features, sampler=decoding.sampler(),
                             max_length=decoding.max_length, batch_size=decoding.decode_batch_size,
                             forbid_unknown=decoding.forbid_unknown,
                             no_repeat_ngram_size=decoding.no_repeat_ngram_size)


def image_tags(model, images) -> list[list[Tag]] | None:
    """Each image's ImageNet tags from the model's own encoder checkpoint, or None when its encoder
    is not an ImageNet EfficientNet-Lite (the tagger needs that classifier)."""
    backbone = getattr(model.encoder, "backbone_name", None)
    if backbone not in efficientnet_lite.VARIANTS:
        return None
    return shared_tagger(backbone).tags(images)


def decode_with_tags(model, decoding: DecodingConfig, images) -> tuple[CaptionCandidates, list | None, list[bool]]:
    """(candidates, tags per image or None, which captions the tags constrained)."""
    tags = image_tags(model, images)
    if tags is None or decoding.tag_guidance == "off":
        if tags is None and decoding.tag_guidance == "on":
            raise ConfigError(f"decoding.tag_guidance 'on' needs an EfficientNet-Lite encoder with ImageNet weights; "
                              f"this model's is '{getattr(model.encoder, 'backbone_name', '?')}'")
        plain = dataclasses.replace(decoding, tag_guidance="off")
        return decode(model, plain, images=images), tags, [False] * len(images)
    candidates, constrained = guided_captions(
        model, {"images": images}, tags, decoding.guidance(), beam_size=decoding.beam_size,
        length_penalty=decoding.length_penalty, max_length=decoding.max_length,
        forbid_unknown=decoding.forbid_unknown, batch_size=decoding.decode_batch_size,
        no_repeat_ngram_size=decoding.no_repeat_ngram_size)
    return candidates, tags, constrained


def run_config_of(model_path: str | os.PathLike) -> RunConfig | None:
    """The settings a model was trained with, when it sits in (or is) a run folder; for a shipped
    preset, its decoding settings."""
    if is_preset(model_path):
        return RunConfig.from_dict({"decoding": preset_info(str(model_path))["decoding"]}, f"preset {model_path}")
    path = Path(model_path)
    folder = path if path.is_dir() else path.parent
    if not (folder / RUN_CONFIG_FILE).is_file():
        return None
    return RunConfig.from_dict(read_json_file(folder / RUN_CONFIG_FILE), str(folder / RUN_CONFIG_FILE))


def default_evaluation_data(model_path: str | os.PathLike) -> DataConfig | None:
    """The validation split of the run that trained the model (with its feature cache folder),
    so `sat-tf evaluate --model RUN` scores the data the run selected on."""
    config = run_config_of(model_path)
    if config is None or is_preset(model_path):
        return None
    data = validation_data_config(config)
    if data is not None and data.feature_cache == "auto":
        folder = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
        data = dataclasses.replace(data, feature_cache=str(folder / "features" / "validation"))
    return data


def _images_or_features(model, data: CaptionData, feature_cache: str | None) -> dict:
    """{"features": ...} read from a cache checked against every member's encoder, or {"images": ...}
    (also for an ensemble whose members' encoders do not all match the cache)."""
    members = model.models if isinstance(model, CaptionerEnsemble) else [model]
    size = members[0].encoder.image_size
    if feature_cache is not None:
        try:
            caches = [FeatureCache(feature_cache, encoder_identity(m.encoder, data.image_paths)) for m in members]
            return {"features": caches[0].gather(np.arange(len(caches[0])))}
        except StaleCacheError:
            if len(members) == 1:
                raise
    if isinstance(data.images, np.ndarray):
        return {"images": data.images}
    return {"images": np.stack([load_image(p, size) for p in data.images])}


def evaluate_captioner(model_paths: Sequence[str], data: DataConfig, decoding: DecodingConfig,
                       tokenization: str = "auto", output: str | os.PathLike | None = None,
                       verbose: bool = True, instances: str | os.PathLike | None = None) -> dict:
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
        The report: the metrics at the top level, plus "models", "decoding", "images" and "captions".
    """
    model = load_captioners(model_paths)
    members = model.models if isinstance(model, CaptionerEnsemble) else [model]
    captions = load_captions(data, members[0].encoder.image_size, verbose=verbose)
    inputs = _images_or_features(model, captions, data.feature_cache)
    best = decode(model, decoding, **inputs).best()
    hypotheses = dict(zip(captions.image_ids, best.texts))
    scores = caption_metrics(captions.references(), hypotheses, tokenization=tokenization)
    report = {**scores, "models": [str(model_file(p)) for p in model_paths], "decoding": dataclasses.asdict(decoding),
              "images": len(captions), "data": dataclasses.asdict(data), "captions": hypotheses}
    if instances is not None:
        objects = coco_object_masks(str(instances), [Path(p).name for p in captions.image_paths])
        grounding = attention_grounding([t.split() for t in best.texts], best.alphas, objects, members[0].feature_grid)
        report["grounding"] = {key: value for key, value in grounding.items() if key != "words"}
    if output:
        write_json_atomic(output, report)
    return report


@dataclasses.dataclass
class CaptionedFiles:
    """Captions of image files: the readable ones, their candidates, and why others were skipped."""

    paths: list[str]
    candidates: CaptionCandidates
    skipped: list[str]
    tags: list[list[Tag]] | None = None  # per image, its ImageNet tags (when the encoder has a tagger)
    constrained: list[bool] | None = None  # per image, whether the tags constrained its caption


def caption_files(model, paths: Sequence[str], decoding: DecodingConfig, skip_bad: bool = False,
                  with_tags: bool = False) -> CaptionedFiles:
    """Reads image files (through the library's one image contract) and captions them; with
    `with_tags` (or tag guidance on), also tags them."""
    size = model.encoder.image_size
    loaded, pixels, skipped = [], [], []
    for path in paths:
        try:
            pixels.append(load_image(path, size))
            loaded.append(str(path))
        except ImageLoadError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
    if not loaded:
        raise ConfigError("no readable images")
    if with_tags or decoding.tag_guidance != "off":
        candidates, tags, constrained = decode_with_tags(model, decoding, np.stack(pixels))
        return CaptionedFiles(loaded, candidates, skipped, tags, constrained)
    return CaptionedFiles(loaded, decode(model, decoding, images=np.stack(pixels)), skipped)


def extract_split_features(model: ModelConfig, data: DataConfig, cache_dir: str | os.PathLike,
                           batch_size: int = 32, shard_size: int = 1024, verbose: bool = True) -> FeatureCache:
    """Caches a frozen encoder's features of a split (resumable); records the encoder settings so
    that `sat-tf train --feature-cache` rebuilds the same encoder."""
    if data.is_synthetic:
        raise ConfigError("extract needs a caption file (--captions): generated data is made on the fly")
    encoder = model.build_encoder()
    captions = load_captions(data, encoder.image_size, verbose=verbose)
    if verbose:
        print(f"extracting features of {len(captions)} images", file=sys.stderr)
    return extract_to_cache(encoder, captions.image_paths, cache_dir, batch_size=batch_size, shard_size=shard_size,
                            verbose=verbose, settings=encoder_settings_record(model, encoder))
