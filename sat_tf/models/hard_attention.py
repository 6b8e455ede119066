"""Stochastic "hard" attention (Xu et al. 2015, section 4.1): sampling and the REINFORCE objective.

The decoder samples a location s_t ~ Multinoulli(alpha_t) per step and uses z_t = beta_t a_{s_t}
(`AttentionDecoder(attention_mode="hard")`); the functions here turn what it returns into the
paper's learning rule. For one sampled sequence s of a caption y,

    surrogate(s) = log p(y|s,a) + lambda_r * stop_gradient(log p(y|s,a) - b) * log p(s|a)
                   + lambda_e * H[s]

whose gradient is the paper's Monte-Carlo estimate of dL_s/dW (equation 11-12 with the baseline
and entropy terms), and b is the moving average b_k = 0.9 b_{k-1} + 0.1 log p(y|s_k,a).

Two variants change only the REINFORCE term's reward and baseline (`Captioner(hard_reward=...,
hard_baseline=..., location_samples=k)`):
- reward "mean_word_log_likelihood": r(s) = log p(y|s,a) / T_y, the per-word mean the authors'
  code (arctic-captions) feeds the REINFORCE term, weighted 1/10 there; the moving average then
  tracks r. It removes the caption length from the reward, which otherwise dominates its spread.
- baseline "leave_one_out": k location sequences are sampled per caption and each one's baseline
  is the mean reward of the other k - 1 (as in self-critical training); it does not depend on the
  sample it is subtracted from, so the estimate stays unbiased.

Reference:
    Xu et al., "Show, Attend and Tell", ICML 2015, section 4.1; Williams, "Simple statistical
    gradient-following algorithms for connectionist reinforcement learning", 1992.
"""

from __future__ import annotations

import tensorflow as tf

ATTENTION_MODES = ("soft", "hard")
# What a hard-attention model uses at test time: the most likely region, a sampled region, or the
# expectation (the soft context). Measured on Flickr8k dev (benchmarks/quality/flickr8k.py): expectation
# 18.2 greedy BLEU-4, argmax 17.5, sample 17.7, so the decoder's default is "expectation".
HARD_INFERENCE_MODES = ("argmax", "sample", "expectation")
# The REINFORCE term's reward and baseline (module docstring).
HARD_REWARDS = ("log_likelihood", "mean_word_log_likelihood")
HARD_BASELINES = ("moving_average", "leave_one_out")
# lambda_r for each reward when none is given: the authors' 1/10 on the per-word mean, and its
# equivalent on the summed log-likelihood of ~12-word Flickr8k captions (0.1 / 12 ~ 0.01).
DEFAULT_REWARD_WEIGHTS = {"log_likelihood": 0.01, "mean_word_log_likelihood": 0.1}


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
    reward: tf.Tensor | None = None,
) -> tf.Tensor:
    """Per-caption surrogate whose gradient is the paper's estimate (to be maximised); all [B].

    Args:
        caption_log_likelihood: log p(y|s,a), summed over the caption's tokens.
        locations_log_likelihood: log p(s|a) (`location_log_likelihood`).
        entropy: H[s] (`attention_entropy`).
        baseline: b, a baseline of the reward ([B] or a scalar) that does not depend on s.
        reward_weight: lambda_r.
        entropy_weight: lambda_e.
        reward: r(s) of the REINFORCE term (`caption_reward`); None: log p(y|s,a) (the paper).
    """
    reward = caption_log_likelihood if reward is None else reward
    advantage = tf.stop_gradient(reward - baseline)
    return caption_log_likelihood + reward_weight * advantage * locations_log_likelihood + entropy_weight * entropy


def caption_reward(caption_log_likelihood: tf.Tensor, mask: tf.Tensor, kind: str = "log_likelihood") -> tf.Tensor:
    """r(s) of the REINFORCE term, [B]: log p(y|s,a) ("log_likelihood") or its mean over the
    caption's real tokens ("mean_word_log_likelihood"). mask [B, T] marks the real tokens."""
    if kind not in HARD_REWARDS:
        raise ValueError(f"hard attention reward must be one of {HARD_REWARDS}, got '{kind}'")
    if kind == "log_likelihood":
        return caption_log_likelihood
    words = tf.reduce_sum(tf.cast(mask, caption_log_likelihood.dtype), axis=1)
    return caption_log_likelihood / tf.maximum(words, 1.0)


def leave_one_out_baseline(rewards: tf.Tensor) -> tf.Tensor:
    """[B, k] -> each sample's baseline: the mean reward of its row's other k - 1 samples."""
    k = tf.cast(tf.shape(rewards)[1], rewards.dtype)
    return (tf.reduce_sum(rewards, axis=1, keepdims=True) - rewards) / (k - 1.0)


def updated_baseline(baseline: tf.Tensor, mean_log_likelihood: tf.Tensor, decay: float = 0.9) -> tf.Tensor:
    """b_k = decay * b_{k-1} + (1 - decay) * log p(y|s_k,a) (averaged over the minibatch)."""
    return decay * baseline + (1.0 - decay) * mean_log_likelihood
