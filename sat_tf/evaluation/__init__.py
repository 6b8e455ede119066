"""Evaluation layer: caption metrics and attention localization (imports data, models, inference)."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow

from sat_tf.evaluation.bleu import corpus_bleu
from sat_tf.evaluation.cider import CiderD
from sat_tf.evaluation.localization import attention_localization
from sat_tf.evaluation.metrics import caption_metrics

__all__ = ["CiderD", "attention_localization", "caption_metrics", "corpus_bleu"]
