"""Sampling: each word drawn from the model's distribution (temperature, optional top-k)."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from sat_tf.inference.sampler import Sampler


@dataclasses.dataclass(frozen=True)
class RandomSampler(Sampler):
    """Draws `num_samples` independent captions per image, word by word.

    Each word is drawn from softmax(log p / temperature), restricted to the `top_k` most probable
    words when given. Draws are a pure function of the call's seed (stateless random ops), so the
    same seed gives the same captions, compiled or not. The recorded `token_log_probs` are the
    model's own log-probabilities of the drawn words (temperature 1, no top-k), which is what
    policy-gradient training (self-critical sequence training) needs.

    Args:
        num_samples: captions drawn per image (k).
        temperature: > 0; below 1 sharpens, above 1 flattens the distribution.
        top_k: draw only among this many most probable words (None: all words).

    Example:
        >>> samples = generate_captions(model, features=f, sampler=RandomSampler(5), seed=7)
        >>> samples.texts[0]          # 5 sampled captions of the first image
    """

    num_samples: int = 1
    temperature: float = 1.0
    top_k: int | None = None

    def __post_init__(self):
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")

    @property
    def num_hypotheses(self) -> int:
        return self.num_samples

    def select(self, log_probs, scores, step, seed, constraint=None):
        batch, k, vocabulary = tf.shape(log_probs)[0], self.num_samples, tf.shape(log_probs)[2]
        logits = tf.reshape(log_probs, [-1, vocabulary]) / self.temperature
        if self.top_k is not None:
            kth_best = tf.math.top_k(logits, k=self.top_k).values[:, -1:]
            logits = tf.where(logits < kth_best, tf.fill(tf.shape(logits), -1e9), logits)
        step_seed = tf.random.experimental.stateless_fold_in(seed, step)
        word = tf.reshape(tf.random.stateless_categorical(logits, 1, step_seed, dtype=tf.int32), [batch, k])
        chosen = tf.gather(log_probs, word, batch_dims=2)
        parent = tf.tile(tf.range(k)[tf.newaxis], [batch, 1])
        return parent, word, scores + chosen
