"""Caption training losses: masked token cross-entropy and the doubly stochastic attention penalty."""

from __future__ import annotations

import tensorflow as tf

PENALTY_TARGETS = ("one", "length")


def masked_token_cross_entropy(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """-log p(target) per position, 0 at padding. logits [B, T, V], targets/mask [B, T] -> [B, T]."""
    token_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return token_losses * tf.cast(mask, token_losses.dtype)


def masked_cross_entropy_sum(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Sum over non-padding positions of -log p(target). logits [B, T, V], targets/mask [B, T]."""
    return tf.reduce_sum(masked_token_cross_entropy(logits, targets, mask))


def doubly_stochastic_penalty(alphas: tf.Tensor, mask: tf.Tensor, target: str = "one") -> tf.Tensor:
    """Per-example sum_i (tau - sum_t alpha_ti)^2 over non-padding steps; returns [B].

    Args:
        alphas: attention weights [B, T, L].
        mask: [B, T], true at real (non-padding) target steps.
        target: "one" uses tau = 1 (the paper); "length" uses tau = T_b / L, with T_b the caption's
            number of real steps, the only target that is reachable when T_b < L.
    """
    if target not in PENALTY_TARGETS:
        raise ValueError(f"penalty target must be one of {PENALTY_TARGETS}, got '{target}'")
    mask = tf.cast(mask, alphas.dtype)
    attention_per_region = tf.reduce_sum(alphas * mask[:, :, tf.newaxis], axis=1)  # [B, L]
    if target == "one":
        tau = tf.ones_like(attention_per_region)
    else:
        num_regions = tf.cast(tf.shape(alphas)[2], alphas.dtype)
        tau = (tf.reduce_sum(mask, axis=1) / num_regions)[:, tf.newaxis] * tf.ones_like(attention_per_region)
    return tf.reduce_sum(tf.square(tau - attention_per_region), axis=1)
