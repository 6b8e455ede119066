"""Workflows: whole jobs from settings (train, evaluate, caption, extract), the layer the command
line and the demo are thin glue over (imports every layer below)."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow

from sat_tf.workflows.caption import (
    LoadedCaptioner,
    caption_files,
    caption_photos,
    caption_stream,
    decoding_for,
    load_for_captioning,
)
from sat_tf.workflows.evaluate import evaluate_captioner, extract_split_features
from sat_tf.workflows.models import load_captioner, load_captioners
from sat_tf.workflows.run_config import DecodingConfig, RunConfig, ValidationConfig, recipe_names, resolve_run_config
from sat_tf.workflows.train import train_captioner

__all__ = [
    "DecodingConfig",
    "LoadedCaptioner",
    "RunConfig",
    "ValidationConfig",
    "caption_files",
    "caption_photos",
    "caption_stream",
    "decoding_for",
    "evaluate_captioner",
    "extract_split_features",
    "load_captioner",
    "load_captioners",
    "load_for_captioning",
    "recipe_names",
    "resolve_run_config",
    "train_captioner",
]
