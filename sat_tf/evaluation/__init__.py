"""Evaluation layer: caption metrics and attention localization (imports data, models, inference)."""

from sat_tf.evaluation.bleu import corpus_bleu
from sat_tf.evaluation.localization import attention_localization

__all__ = ["attention_localization", "corpus_bleu"]
