"""Greedy decoding: the most probable word at every step."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from sat_tf.inference.sampler import Sampler


@dataclasses.dataclass(frozen=True)
class GreedySampler(Sampler):
    """Emits the most probable word at each step, until `<end>` or the length limit.

    Example:
        >>> captions = generate_captions(model, images=images, sampler=GreedySampler()).best()
        >>> captions.texts[0], captions.alphas.shape
    """

    @property
    def num_hypotheses(self) -> int:
        return 1

    def select(self, log_probs, scores, step, seed, constraint=None):
        word = tf.argmax(log_probs, axis=-1, output_type=tf.int32)  # [B, 1]
        chosen = tf.gather(log_probs, word, batch_dims=2)
        return tf.zeros_like(word), word, scores + chosen
