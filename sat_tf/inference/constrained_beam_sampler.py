"""Constrained beam search: the best caption that contains at least one of a set of words."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from sat_tf.inference.beam_sampler import BeamSampler
from sat_tf.inference.sampler import NEG_INF


@dataclasses.dataclass(frozen=True)
class ConstrainedBeamSampler(BeamSampler):
    """Beam search under one disjunctive constraint per image: "at least one of these words".

    The constraint has two states (not yet met, met), so, as in constrained beam search, the
    search keeps two beams of k hypotheses: hypotheses 0..k-1 have not used a constraint word,
    hypotheses k..2k-1 have. Each step, a continuation goes to the beam of its new state (a met
    hypothesis stays met; an unmet one becomes met by emitting a constraint word), and each beam
    keeps its k best. The captions are returned best first, those meeting the constraint before
    the others; where no caption meets it (the length limit), the unconstrained best leads. With
    a beam large enough to hold every prefix, this finds the most probable caption that meets the
    constraint (tested against exhaustive search). beam_size=1 is constrained greedy decoding.

    The words come per image through `generate_captions(..., constraint_words=[N, V])`
    (see `sat_tf.inference.tag_guidance` for words from the encoder's ImageNet tags).

    Args:
        beam_size: k, per beam (2k hypotheses in all).
        length_penalty: final hypotheses are ranked by log p / length**length_penalty.

    Example:
        >>> words = np.zeros([len(images), tokenizer.vocabulary_size]); words[0, tokenizer.id("elephant")] = 1
        >>> generate_captions(model, images=images, sampler=ConstrainedBeamSampler(3), constraint_words=words)

    Reference:
        Anderson et al., "Guided Open Vocabulary Image Captioning with Constrained Beam Search",
        EMNLP 2017.
    """

    @property
    def num_hypotheses(self) -> int:
        return 2 * self.beam_size

    @property
    def needs_constraint(self) -> bool:
        return True

    def initial_scores(self, batch):
        # One live hypothesis, in the unmet beam.
        live_first = tf.concat([[0.0], tf.fill([2 * self.beam_size - 1], NEG_INF)], 0)
        return tf.tile(live_first[tf.newaxis], [batch, 1])

    def _met(self) -> tf.Tensor:
        """bool [2k]: which hypotheses are in the met beam."""
        return tf.range(2 * self.beam_size) >= self.beam_size

    def select(self, log_probs, scores, step, seed, constraint=None):
        batch, vocabulary, k = tf.shape(log_probs)[0], tf.shape(log_probs)[2], self.beam_size
        total = scores[:, :, tf.newaxis] + log_probs  # [B, 2k, V]
        goes_to_met = self._met()[tf.newaxis, :, tf.newaxis] | (constraint[:, tf.newaxis, :] > 0)
        # Below any reachable score (dead hypotheses sit at NEG_INF plus log-probs), so a beam
        # with fewer than k live candidates fills up with dead ones of its own state.
        excluded = tf.fill(tf.shape(total), 4 * NEG_INF)

        def best_of(mask):
            flat = tf.reshape(tf.where(mask, total, excluded), [batch, -1])
            new_scores, index = tf.math.top_k(flat, k=k)
            return index // vocabulary, index % vocabulary, new_scores

        unmet_parent, unmet_word, unmet_scores = best_of(~goes_to_met)
        met_parent, met_word, met_scores = best_of(goes_to_met)
        return (
            tf.concat([unmet_parent, met_parent], 1),
            tf.concat([unmet_word, met_word], 1),
            tf.concat([unmet_scores, met_scores], 1),
        )

    def final_order(self, scores, lengths):
        met_and_live = self._met()[tf.newaxis, :] & (scores > NEG_INF / 2)
        if self.length_penalty:
            scores = scores / tf.pow(tf.cast(tf.maximum(lengths, 1), tf.float32), self.length_penalty)
        ranking_key = tf.where(met_and_live, scores, scores + 8 * NEG_INF)  # met captions first
        return scores, tf.argsort(ranking_key, axis=1, direction="DESCENDING", stable=True)
