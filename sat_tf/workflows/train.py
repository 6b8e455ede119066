"""Training from a `RunConfig`: data, vocabulary, model, validation and the loop, in one call."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from sat_tf.data.feature_cache import FeatureCache
from sat_tf.data.images import load_image
from sat_tf.data.pipeline import encode_captions
from sat_tf.data.sources import DataConfig, load_captions
from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.evaluation.validation import bleu4_validator
from sat_tf.models.config import build_captioner
from sat_tf.training import TrainingData, TrainResult, make_strategy, train
from sat_tf.workflows.features import cache_folder, features_source, model_config_for_cache
from sat_tf.workflows.run_config import RUN_CONFIG_FILE, RunConfig

# Held-out generated images use another seed than the training images.
VALIDATION_SEED_OFFSET = 1_000_003


def train_captioner(config: RunConfig, output_dir: str | os.PathLike, resume: bool = False, verbose: bool = True,
                    validate: bool = True) -> TrainResult:
    """Trains the captioner a `RunConfig` describes; writes the run folder.

    The folder gets `run_config.json` (the resolved settings), checkpoints, TensorBoard logs,
    `model.keras` (last epoch) and, with validation, `best_model.keras` and `best.json` (the
    epoch selected on validation BLEU-4, which `sat-tf evaluate/caption --model <folder>` use).

    Args:
        config: every setting of the run.
        output_dir: the run folder.
        resume: continue from the folder's latest checkpoint.
        verbose: progress and skip reports.
        validate: select on validation BLEU-4 when the config has validation data.
    """
    if config.training.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    # Before any TensorFlow op runs: MultiWorkerMirroredStrategy configures collectives at startup.
    strategy = make_strategy(config.training.strategy)
    output_dir = Path(output_dir)
    train_cache = cache_folder(config.data.feature_cache, output_dir, "train")
    config = dataclasses.replace(config, model=model_config_for_cache(config.model, train_cache))
    probe = config.model.build_encoder()  # settings are checked before any data is read
    data = load_captions(config.data, probe.image_size, id_prefix="train", verbose=verbose)
    tokenizer = CaptionTokenizer.from_corpus([r.caption for r in data.records], min_count=config.data.min_word_count,
                                             max_size=config.data.max_vocabulary)
    captions = encode_captions(data.records, tokenizer, data.image_index, max_words=config.data.max_caption_words,
                               skip_invalid=config.data.skip_bad, drop_long=True)
    if captions.skipped and verbose:
        print(f"left out {len(captions.skipped)} caption(s), e.g. "
              f"{'; '.join(f'{k}: {v}' for k, v in list(captions.skipped.items())[:3])}", file=sys.stderr)
    source = features_source(data, probe, config.model, config.data.feature_cache, output_dir, "train", verbose)
    training = config.training
    if training.bucket_by_length is None:
        training = dataclasses.replace(training, bucket_by_length=not probe.uses_batch_statistics)
    config = dataclasses.replace(config, training=training)
    validator = validation_scorer(config, probe, output_dir, verbose) if validate else None
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save(output_dir / RUN_CONFIG_FILE)
    return train(lambda: build_captioner(config.model, tokenizer), TrainingData(source, captions, probe.image_size),
                 training, output_dir, strategy=strategy, resume=resume, verbose=verbose, validate=validator)


def validation_data_config(config: RunConfig) -> DataConfig | None:
    """The validation split as a data source: the validation section over the data section's
    root and image folder; None for generated data (held-out images are generated instead)."""
    validation = config.validation
    if validation.captions is None:
        return None
    return DataConfig(captions=validation.captions, image_dir=validation.image_dir or config.data.image_dir,
                      split_list=validation.split_list, split=validation.split, data_root=config.data.data_root,
                      feature_cache=validation.feature_cache, skip_bad=config.data.skip_bad)


def validation_scorer(config: RunConfig, encoder, output_dir: Path, verbose: bool = True):
    """model -> validation BLEU-4 of greedy captions, or None when the run has no validation data."""
    decoding = config.decoding
    data_config = validation_data_config(config)
    if data_config is None:
        if not config.data.is_synthetic:
            return None
        count = config.validation.num_images or max(64, config.data.num_images // 10)
        held_out = load_captions(config.data, encoder.image_size, id_prefix="validation",
                                 seed_offset=VALIDATION_SEED_OFFSET, num_images=count)
        return bleu4_validator(held_out.images, held_out.image_ids, held_out.references(), decoding.max_length,
                               forbid_unknown=decoding.forbid_unknown)
    data = load_captions(data_config, encoder.image_size, verbose=verbose)
    source = features_source(data, encoder, config.model, data_config.feature_cache, output_dir, "validation",
                             verbose)
    if isinstance(source, FeatureCache):
        return bleu4_validator(None, data.image_ids, data.references(), decoding.max_length,
                               features=source.gather(np.arange(len(source))), forbid_unknown=decoding.forbid_unknown)
    images = np.stack([load_image(p, encoder.image_size) for p in source])
    return bleu4_validator(images, data.image_ids, data.references(), decoding.max_length,
                           forbid_unknown=decoding.forbid_unknown)
