"""Stochastic "hard" attention (Xu et al. 2015, section 4.1): sampling and the REINFORCE objective.

The decoder samples a location s_t ~ Multinoulli(alpha_t) per step and uses z_t = beta_t a_{s_t}
(`AttentionDecoder(attention_mode="hard")`); the functions here turn what it returns into the
paper's learning rule. For one sampled sequence s of a caption y,

    surrogate(s) = log p(y|s,a) + lambda_r * stop_gradient(log p(y|s,a) - b) * log p(s|a)
                   + lambda_e * H[s]

whose gradient is the paper's Monte-Carlo estimate of dL_s/dW (equation 11-12 with the baseline
and entropy terms), and b is the moving average b_k = 0.9 b_{k-1} + 0.1 log p(y|s_k,a).

Reference:
    Xu et al., "Show, Attend and Tell", ICML 2015, section 4.1; Williams, "Simple statistical
    gradient-following algorithms for connectionist reinforcement learning", 1992.
"""

from __future__ import annotations

import tensorflow as tf

ATTENTION_MODES = ("soft", "hard")
# What a hard-attention model uses at test time: the most likely region, a sampled region, or the
# expectation (the soft context). Measured on Flickr8k dev (benchmarks/flickr8k.py): expectation
# 18.2 greedy BLEU-4, argmax 17.5, sample 17.7, so the decoder's default is "expectation".
HARD_INFERENCE_MODES = ("argmax", "sample", "expectation")


def sample_locations(alpha: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """Draws s ~ Multinoulli(alpha) by inverting the CDF with given uniforms.

    Args:
        alpha: attention weights [B, L] (rows sum to 1).
        uniform: U(0, 1) draws [B]. Passing them in (drawn once per minibatch outside the
            recurrence) keeps the loop free of random ops and the draw reproducible from a seed.

    Returns:
        int32 [B], the sampled region of each row.
    """
    cdf = tf.cumsum(alpha, axis=-1)
    below = tf.cast(cdf < uniform[:, tf.newaxis], tf.int32)
    # Rounding can leave cdf[-1] slightly under 1: clip to the last region.
    return tf.minimum(tf.reduce_sum(below, axis=-1), tf.shape(alpha)[-1] - 1)


def location_log_likelihood(alphas: tf.Tensor, locations: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """log p(s|a) = sum_t log alpha_t[s_t] over real steps. alphas [B, T, L], locations int [B, T] -> [B]."""
    chosen = tf.gather(alphas, locations, batch_dims=2)
    return tf.reduce_sum(tf.math.log(tf.maximum(chosen, 1e-20)) * tf.cast(mask, alphas.dtype), axis=1)


def attention_entropy(alphas: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """sum_t H(alpha_t) = -sum_t sum_i alpha_ti log alpha_ti over real steps; [B, T, L] -> [B]."""
    per_step = -tf.reduce_sum(alphas * tf.math.log(tf.maximum(alphas, 1e-20)), axis=-1)
    return tf.reduce_sum(per_step * tf.cast(mask, alphas.dtype), axis=1)


def reinforce_surrogate(
    caption_log_likelihood: tf.Tensor,
    locations_log_likelihood: tf.Tensor,
    entropy: tf.Tensor,
    baseline: tf.Tensor | float,
    reward_weight: float,
    entropy_weight: float,
) -> tf.Tensor:
    """Per-caption surrogate whose gradient is the paper's estimate (to be maximised); all [B].

    Args:
        caption_log_likelihood: log p(y|s,a), summed over the caption's tokens.
        locations_log_likelihood: log p(s|a) (`location_log_likelihood`).
        entropy: H[s] (`attention_entropy`).
        baseline: b, the moving average of log p(y|s,a).
        reward_weight: lambda_r.
        entropy_weight: lambda_e.
    """
    advantage = tf.stop_gradient(caption_log_likelihood - baseline)
    return (caption_log_likelihood + reward_weight * advantage * locations_log_likelihood
            + entropy_weight * entropy)


def updated_baseline(baseline: tf.Tensor, mean_log_likelihood: tf.Tensor, decay: float = 0.9) -> tf.Tensor:
    """b_k = decay * b_{k-1} + (1 - decay) * log p(y|s_k,a) (averaged over the minibatch)."""
    return decay * baseline + (1.0 - decay) * mean_log_likelihood
