"""Training from a `RunConfig`: data, vocabulary, model, validation and the loop, in one call."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from sat_tf.data.images import load_image
from sat_tf.data.pipeline import encode_captions
from sat_tf.data.sources import CaptionData, DataConfig, decoder_inputs, load_captions
from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.errors import ConfigError
from sat_tf.evaluation.validation import bleu4_validator, cider_validator
from sat_tf.inference import generate_captions
from sat_tf.inference.attention_plot import attention_figure_array
from sat_tf.models.config import build_captioner
from sat_tf.training import TrainingData, TrainResult, make_strategy, train
from sat_tf.training.self_critical import CiderReward, SelfCriticalTask
from sat_tf.workflows.features import cache_folder, features_source, model_config_for_cache
from sat_tf.workflows.models import initialize_from, load_captioner
from sat_tf.workflows.run_config import RUN_CONFIG_FILE, RunConfig

# Held-out generated images use another seed than the training images.
VALIDATION_SEED_OFFSET = 1_000_003


def training_source(config: RunConfig, data, encoder, output_dir, verbose: bool):
    """The training photos (or their feature caches), read through the config's photo views."""
    return features_source(
        data,
        encoder,
        config.model,
        config.data.feature_cache,
        output_dir,
        "train",
        verbose,
        views=config.data.views(),
        seed=config.training.seed,
    )


def train_captioner(
    config: RunConfig, output_dir: str | os.PathLike, resume: bool = False, verbose: bool = True, validate: bool = True
) -> TrainResult:
    """Trains the captioner a `RunConfig` describes; writes the run folder.

    The folder gets `run_config.json` (the resolved settings), checkpoints, TensorBoard logs,
    `model.keras` (last epoch) and, with validation, `best_model.keras` and `best.json` (the
    epoch selected on validation BLEU-4, which `sat-tf evaluate/caption --model <folder>` use).

    With `config.training.init_from` set, the model starts from that trained model's weights and
    vocabulary (`initialize_from`); with `config.scst.init_from` set, runs `train_self_critical`
    instead.

    Args:
        config: every setting of the run.
        output_dir: the run folder.
        resume: continue from the folder's latest checkpoint.
        verbose: progress and skip reports.
        validate: select on validation BLEU-4 when the config has validation data.
    """
    if config.scst.init_from is not None:
        return train_self_critical(config, output_dir, resume, verbose)
    if config.training.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    # Before any TensorFlow op runs: MultiWorkerMirroredStrategy configures collectives at startup.
    strategy = make_strategy(config.training.strategy)
    output_dir = Path(output_dir)
    train_cache = cache_folder(config.data.feature_cache, output_dir, "train")
    config = dataclasses.replace(config, model=model_config_for_cache(config.model, train_cache))
    probe = config.model.build_encoder()  # settings are checked before any data is read
    initial = load_captioner(config.training.init_from) if config.training.init_from else None
    data = load_captions(config.data, probe.image_size, id_prefix="train", verbose=verbose)
    tokenizer = (
        initial.tokenizer
        if initial is not None and config.training.init_vocabulary == "model"
        else CaptionTokenizer.from_corpus(
            [r.caption for r in data.records], min_count=config.data.min_word_count, max_size=config.data.max_vocabulary
        )
    )
    captions = training_captions(data, tokenizer, config)
    if captions.has_text_only and not config.model.text_only_context:
        raise ConfigError(
            "data.mix: a text_only source needs model.text_only_context (the decoder's 'no photo' annotation)"
        )
    if captions.skipped and verbose:
        print(
            f"left out {len(captions.skipped)} caption(s), e.g. "
            f"{'; '.join(f'{k}: {v}' for k, v in list(captions.skipped.items())[:3])}",
            file=sys.stderr,
        )
    source = training_source(config, data, probe, output_dir, verbose)
    validator = validation_scorer(config, probe, output_dir, verbose) if validate else None
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save(output_dir / RUN_CONFIG_FILE)
    figures = attention_figures(config, probe) if validator is not None else None

    def build_model():
        model = build_captioner(config.model, tokenizer)
        return model if initial is None else initialize_from(model, initial, config.training.init_from)

    return train(
        build_model,
        TrainingData(source, captions, probe.image_size),
        config.training,
        output_dir,
        strategy=strategy,
        resume=resume,
        verbose=verbose,
        validate=validator,
        figures=figures,
    )


def validation_data_config(config: RunConfig) -> DataConfig | None:
    """The validation split as a data source: the validation section over the data section's
    root and image folder; None for generated data (held-out images are generated instead)."""
    validation = config.validation
    if validation.captions is None:
        return None
    return DataConfig(
        captions=validation.captions,
        image_dir=validation.image_dir or config.data.image_dir,
        split_list=validation.split_list,
        split=validation.split,
        data_root=config.data.data_root,
        feature_cache=validation.feature_cache,
        skip_bad=config.data.skip_bad,
    )


def validation_captions(config: RunConfig, image_size: int, verbose: bool = True) -> CaptionData | None:
    """The validation split's images and references: the validation section's caption file, or
    held-out generated images for generated data; None when the run has no validation data."""
    data_config = validation_data_config(config)
    if data_config is not None:
        return load_captions(data_config, image_size, verbose=verbose)
    if not config.data.is_synthetic:
        return None
    count = config.validation.num_images or max(64, config.data.num_images // 10)
    return load_captions(
        config.data, image_size, id_prefix="validation", seed_offset=VALIDATION_SEED_OFFSET, num_images=count
    )


def validation_scorer(config: RunConfig, encoder, output_dir: Path, verbose: bool = True, metric: str = "BLEU-4"):
    """model -> validation BLEU-4 (or CIDEr-D) of greedy captions, or None when the run has no
    validation data."""
    decoding = config.decoding
    data = validation_captions(config, encoder.image_size, verbose)
    if data is None:
        return None
    source = data.images  # generated images
    validation_data = validation_data_config(config)
    if validation_data is not None:  # image files, or their features
        cache = validation_data.feature_cache
        source = features_source(data, encoder, config.model, cache, output_dir, "validation", verbose)
    inputs = decoder_inputs(source, encoder.image_size)
    if metric == "CIDEr":
        return cider_validator(
            data.image_ids, data.references(), decoding.max_length, forbid_unknown=decoding.forbid_unknown, **inputs
        )
    return bleu4_validator(
        inputs.get("images"),
        data.image_ids,
        data.references(),
        decoding.max_length,
        features=inputs.get("features"),
        forbid_unknown=decoding.forbid_unknown,
    )


def attention_figures(config: RunConfig, encoder, count: int = 3):
    """model -> {"attention/<image file>": figure} for the first `count` validation images: the
    greedy caption with one attention panel per word (the `sat-tf caption --attention-plot`
    figure), so TensorBoard shows attention forming over training. None without validation data."""
    data = validation_captions(config, encoder.image_size, verbose=False)
    if data is None:
        return None
    ids = data.image_ids[:count]
    images = (
        data.images[:count]
        if isinstance(data.images, np.ndarray)
        else np.stack([load_image(path, encoder.image_size) for path in data.image_paths[:count]])
    )

    def render(model) -> dict[str, np.ndarray]:
        decoded = generate_captions(
            model, images=images, max_length=config.decoding.max_length, forbid_unknown=config.decoding.forbid_unknown
        ).best()
        return {
            f"attention/{Path(image_id).name}": attention_figure_array(
                image, decoded.words(k), decoded.alphas[k], model.feature_grid
            )
            for k, (image_id, image) in enumerate(zip(ids, images))
        }

    return render


def train_self_critical(
    config: RunConfig, output_dir: str | os.PathLike, resume: bool = False, verbose: bool = True
) -> TrainResult:
    """Self-critical fine-tuning of the model `config.scst.init_from` (Rennie et al. 2017): each
    epoch visits every training image once (k sampled captions each, CIDEr-D rewards with
    document frequencies from all training references), selecting on validation CIDEr-D.
    Checkpointed and resumable like cross-entropy training; the optimizer settings are the
    training section's."""
    init_from = config.scst.init_from
    if init_from is None:
        raise ConfigError("scst.init_from: self-critical training starts from a trained model")
    if config.training.precision != "float32":  # the sampling loop runs in the step: float32 only
        raise ConfigError("self-critical training runs in float32; leave training.precision at float32")
    strategy = make_strategy(config.training.strategy)
    output_dir = Path(output_dir)
    # Read once here for the vocabulary and the encoder's cache identity; the Trainer loads the
    # model again inside the strategy's scope, where its variables must be created.
    initial = load_captioner(init_from)
    tokenizer, encoder = initial.tokenizer, initial.encoder
    # SCST scores sampled captions against a photo's references: captions without one do not take part.
    data = load_captions(config.data, encoder.image_size, id_prefix="train", verbose=verbose).with_photos_only()
    captions = training_captions(data, tokenizer, config)
    reward = CiderReward.from_token_ids(captions.tokens, captions.lengths, captions.image_index, tokenizer.end_id)
    first_of_each_image = np.unique(captions.image_index, return_index=True)[1]
    per_image = dataclasses.replace(
        captions,
        image_index=captions.image_index[first_of_each_image],
        tokens=captions.tokens[first_of_each_image],
        lengths=captions.lengths[first_of_each_image],
        source=None if captions.source is None else captions.source[first_of_each_image],
        skipped={},
    )
    source = training_source(config, data, encoder, output_dir, verbose)
    validator = validation_scorer(config, encoder, output_dir, verbose, metric="CIDEr")
    scst = config.scst
    training = dataclasses.replace(config.training, bucket_by_length=False)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save(output_dir / RUN_CONFIG_FILE)

    def build_task(model):
        return SelfCriticalTask(
            model,
            reward,
            num_samples=scst.num_samples,
            baseline=scst.baseline,
            max_length=scst.max_length,
            clip_norm=training.clip_norm,
            seed=training.seed,
        )

    return train(
        lambda: load_captioner(init_from),
        TrainingData(source, per_image, encoder.image_size),
        training,
        output_dir,
        strategy=strategy,
        resume=resume,
        verbose=verbose,
        validate=validator,
        build_task=build_task,
        figures=attention_figures(config, encoder) if validator else None,
    )


def training_captions(data: CaptionData, tokenizer: CaptionTokenizer, config: RunConfig):
    """The training split's captions as token ids, with their sources' mixing weights; captions
    over `data.max_caption_words` are left out (and counted), bad records too with `data.skip_bad`."""
    return encode_captions(
        data.records,
        tokenizer,
        data.image_index,
        max_words=config.data.max_caption_words,
        skip_invalid=config.data.skip_bad,
        drop_long=True,
        record_source=data.record_source,
        source_weights=data.source_weights,
    )
