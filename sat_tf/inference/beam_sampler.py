"""Beam search: the k best partial captions kept at every step."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from sat_tf.inference.sampler import NEG_INF, Sampler


@dataclasses.dataclass(frozen=True)
class BeamSampler(Sampler):
    """Beam search with beam size k, returning the k best captions of each image, best first.

    Finished beams (ended by `<end>`) stay in the beam with their score frozen and compete with
    unfinished ones; the search stops when every beam has finished or at the length limit. With
    `length_penalty` > 0, final hypotheses are ranked by log p / length**length_penalty.

    Args:
        beam_size: k.
        length_penalty: exponent of the length normalisation (0: rank by total log-probability).

    Example:
        >>> result = generate_captions(model, images=images, sampler=BeamSampler(3))
        >>> result.best_texts[0], result.texts[0]   # best caption, and the 3-best list
    """

    beam_size: int = 3
    length_penalty: float = 0.0

    def __post_init__(self):
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0, got {self.length_penalty}")

    @property
    def num_hypotheses(self) -> int:
        return self.beam_size

    def initial_scores(self, batch):
        # Only beam 0 is live at the start, so the first step does not pick k copies of one word.
        live_first = tf.concat([[0.0], tf.fill([self.beam_size - 1], NEG_INF)], 0)
        return tf.tile(live_first[tf.newaxis], [batch, 1])

    def select(self, log_probs, scores, step, seed, constraint=None):
        batch, k, vocabulary = tf.shape(log_probs)[0], self.beam_size, tf.shape(log_probs)[2]
        candidates = tf.reshape(scores[:, :, tf.newaxis] + log_probs, [batch, -1])
        new_scores, flat = tf.math.top_k(candidates, k=k)
        return flat // vocabulary, flat % vocabulary, new_scores

    def final_order(self, scores, lengths):
        if self.length_penalty:
            scores = scores / tf.pow(tf.cast(tf.maximum(lengths, 1), tf.float32), self.length_penalty)
        return scores, tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
