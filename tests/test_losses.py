import numpy as np
import pytest
import tensorflow as tf

from sat_tf.models.losses import doubly_stochastic_penalty, masked_cross_entropy_sum


def test_penalty_matches_hand_computation():
    # one caption, 3 steps (the last is padding), 2 regions
    alphas = tf.constant([[[0.75, 0.25], [0.5, 0.5], [0.0, 1.0]]])
    mask = tf.constant([[True, True, False]])
    # sum over real steps: region 0: 1.25, region 1: 0.75
    # tau = 1: (1 - 1.25)^2 + (1 - 0.75)^2 = 0.0625 + 0.0625 = 0.125
    np.testing.assert_allclose(doubly_stochastic_penalty(alphas, mask, "one"), [0.125], rtol=1e-6)
    # tau = T/L = 2/2 = 1 here as well
    np.testing.assert_allclose(doubly_stochastic_penalty(alphas, mask, "length"), [0.125], rtol=1e-6)


def test_length_target_uses_caption_length_over_regions():
    alphas = tf.constant([[[0.5, 0.25, 0.25, 0.0]]])  # 1 step, 4 regions
    mask = tf.constant([[True]])
    # tau = 1/4: (0.25)^2 + 0 + 0 + (0.25)^2 = 0.125 ; tau = 1: 0.25 + 0.5625*2 + 1 = 2.375
    np.testing.assert_allclose(doubly_stochastic_penalty(alphas, mask, "length"), [0.125], rtol=1e-6)
    np.testing.assert_allclose(doubly_stochastic_penalty(alphas, mask, "one"), [2.375], rtol=1e-6)


def test_padding_is_ignored():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 6)).astype(np.float32)
    targets = np.array([[1, 2, 0, 0], [3, 4, 5, 0]])
    mask = targets != 0
    alphas = rng.dirichlet(np.ones(5), size=(2, 4)).astype(np.float32)
    changed_logits, changed_alphas = logits.copy(), alphas.copy()
    changed_logits[~mask] = 100.0 * rng.normal(size=changed_logits[~mask].shape)
    changed_alphas[~mask] = rng.dirichlet(np.ones(5), size=int((~mask).sum()))
    np.testing.assert_allclose(
        masked_cross_entropy_sum(logits, targets, mask),
        masked_cross_entropy_sum(changed_logits, targets, mask),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        doubly_stochastic_penalty(alphas, mask), doubly_stochastic_penalty(changed_alphas, mask), rtol=1e-6
    )
    # and the cross-entropy equals the numpy sum over real positions
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -sum(log_probs[b, t, targets[b, t]] for b in range(2) for t in range(4) if mask[b, t])
    np.testing.assert_allclose(masked_cross_entropy_sum(logits, targets, mask), expected, rtol=1e-5)


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="penalty target"):
        doubly_stochastic_penalty(tf.ones([1, 1, 1]), tf.ones([1, 1], tf.bool), "two")
