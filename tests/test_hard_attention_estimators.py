"""Hard attention's REINFORCE variants through the training task: the authors' per-word reward and
the multi-sample leave-one-out baseline are unbiased estimates of the gradient they stand for
(checked against exact enumeration of every location sequence), the leave-one-out baseline lowers
the variance, and a hard model can start from a trained soft one."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tiny_model

from sat_tf.errors import ConfigError
from sat_tf.models.config import ModelConfig
from sat_tf.models.hard_attention import caption_reward, location_log_likelihood
from sat_tf.training import CaptioningTask
from sat_tf.workflows.models import ModelLoadError, initialize_from


def _hard_model(tokenizer, **settings):
    """A tiny hard-attention captioner that always samples (no expectation minibatches), with
    only the log-likelihood and REINFORCE terms (lambda_r = 1) and a baseline that stays put."""
    model = make_tiny_model(tokenizer, penalty_weight=0.0, attention_mode="hard", expectation_probability=0.0)
    model.entropy_weight, model.reward_weight, model.baseline_decay = 0.0, 1.0, 1.0
    for name, value in settings.items():
        setattr(model, name, value)
    return model


def _one_caption(tiny_data, model):
    """Features of one image (16 regions) and a caption with two targets: <start> w <end>."""
    data, tokenizer, _ = tiny_data
    features = model.encode(data.images[:1].astype(np.float32))
    word = tokenizer.vocabulary.index(data.records[0].caption.split()[-1])
    return features, tf.constant([[tokenizer.start_id, word, tokenizer.end_id]])


def _flat(gradients):
    return np.concatenate([tf.convert_to_tensor(g).numpy().ravel() for g in gradients])


def _exact_task_gradient(model, features, tokens, reward_kind):
    """The expectation of the task's gradient, enumerating all 16^2 location sequences s:
    -(1/T) grad [sum_s p(s) log p(y|s) + sum_s p(s) stop(r(s))] with T = 2 target tokens (the task
    averages over target tokens)."""
    regions = int(features.shape[1])
    sequences = np.array(list(itertools.product(range(regions), repeat=2)), np.int32)
    count = len(sequences)
    decoder = model.decoder
    with tf.GradientTape() as tape:
        outputs = decoder(
            tf.repeat(features, count, 0), tf.repeat(tokens[:, :-1], count, 0), training=False, locations=sequences
        )
        targets = tf.repeat(tokens[:, 1:], count, 0)
        mask = tf.ones_like(targets, tf.bool)
        log_likelihood = -tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, outputs["logits"]), 1)
        p = tf.exp(location_log_likelihood(outputs["alphas"], sequences, mask))
        reward = tf.stop_gradient(caption_reward(log_likelihood, mask, reward_kind))
        objective = tf.reduce_sum(tf.stop_gradient(p) * log_likelihood) + tf.reduce_sum(p * reward)
    np.testing.assert_allclose(float(tf.reduce_sum(p)), 1.0, rtol=1e-5)
    expected_reward = float(tf.reduce_sum(p * reward))
    return -0.5 * _flat(tape.gradient(objective, decoder.trainable_variables)), expected_reward


def _task_gradients(model, features, tokens, captions_per_batch, batches):
    """Gradients of the task's loss on batches of copies of one caption (fresh samples each)."""
    task = CaptioningTask(model)
    batch = {"features": tf.repeat(features, captions_per_batch, 0), "tokens": tf.repeat(tokens, captions_per_batch, 0)}

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            loss, _ = task.compute_caption_loss(batch, training=True)
        return tf.concat(
            [tf.reshape(tf.convert_to_tensor(g), [-1]) for g in tape.gradient(loss, model.decoder.trainable_variables)],
            0,
        )

    return np.stack([gradient().numpy() for _ in range(batches)])


def _assert_unbiased(estimates, exact):
    mean = estimates.mean(axis=0)
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    informative = standard_error > 1e-7
    assert informative.sum() > 50
    z = np.abs(mean - exact)[informative] / standard_error[informative]
    # Hundreds of coordinates: 5 standard errors leaves room for the largest of them.
    assert z.max() < 5.5, f"estimate off the exact gradient by {z.max():.1f} standard errors"
    np.testing.assert_allclose(mean[~informative], exact[~informative], atol=1e-5)


@pytest.mark.parametrize(
    "reward_kind, baseline_kind, samples",
    [
        ("log_likelihood", "moving_average", 1),
        ("mean_word_log_likelihood", "moving_average", 1),
        ("mean_word_log_likelihood", "leave_one_out", 4),
    ],
)
def test_task_gradient_is_unbiased_for_each_reward_and_baseline(tiny_data, reward_kind, baseline_kind, samples):
    model = _hard_model(tiny_data[1], hard_reward=reward_kind, hard_baseline=baseline_kind, location_samples=samples)
    features, tokens = _one_caption(tiny_data, model)
    exact, expected_reward = _exact_task_gradient(model, features, tokens, reward_kind)
    model.reward_baseline.assign(expected_reward)  # a good moving average (unused by leave-one-out)
    estimates = _task_gradients(model, features, tokens, captions_per_batch=32 // samples, batches=200)
    _assert_unbiased(estimates, exact)


def test_leave_one_out_baseline_lowers_the_variance_at_the_same_cost(tiny_data):
    """Same number of decoder passes per step (32): 8 captions x 4 location samples with the
    leave-one-out baseline against 32 single samples with b = 0."""
    plain = _hard_model(tiny_data[1], hard_reward="mean_word_log_likelihood")
    features, tokens = _one_caption(tiny_data, plain)
    plain_variance = _task_gradients(plain, features, tokens, 32, 120).var(axis=0).sum()
    loo = _hard_model(
        tiny_data[1], hard_reward="mean_word_log_likelihood", hard_baseline="leave_one_out", location_samples=4
    )
    loo_variance = _task_gradients(loo, features, tokens, 8, 120).var(axis=0).sum()
    assert loo_variance < 0.5 * plain_variance


def test_per_word_reward_by_value():
    log_likelihood = tf.constant([-6.0, -3.0, -4.0])
    mask = tf.constant([[True, True, True], [True, False, False], [True, True, False]])
    np.testing.assert_allclose(caption_reward(log_likelihood, mask, "mean_word_log_likelihood"), [-2.0, -3.0, -2.0])
    np.testing.assert_allclose(caption_reward(log_likelihood, mask, "log_likelihood"), log_likelihood)
    with pytest.raises(ValueError, match="reward"):
        caption_reward(log_likelihood, mask, "cider")


def test_settings_are_checked_and_round_trip(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="location_samples"):
        ModelConfig(attention="hard", hard_baseline="leave_one_out", location_samples=1)
    with pytest.raises(ConfigError, match="hard_reward"):
        ModelConfig(hard_reward="bleu")
    # The reward weight follows the reward unless given: the authors' 1/10 on the per-word mean.
    model = make_tiny_model(tiny_data[1], attention_mode="hard")
    assert model.reward_weight == pytest.approx(0.01)
    model = _hard_model(tiny_data[1])
    config = {
        **model.get_config(),
        "hard_reward": "mean_word_log_likelihood",
        "hard_baseline": "leave_one_out",
        "location_samples": 3,
        "reward_weight": None,
    }
    rebuilt = type(model).from_config(config)
    assert rebuilt.reward_weight == pytest.approx(0.1) and rebuilt.location_samples == 3
    rebuilt.save(tmp_path / "hard.keras")
    loaded = keras.saving.load_model(tmp_path / "hard.keras")
    assert (loaded.hard_reward, loaded.hard_baseline, loaded.location_samples) == (
        "mean_word_log_likelihood",
        "leave_one_out",
        3,
    )


def test_hard_model_starts_from_a_soft_one(tiny_data):
    soft = make_tiny_model(tiny_data[1], seed=1)
    hard = initialize_from(make_tiny_model(tiny_data[1], seed=2, attention_mode="hard"), soft, "soft.keras")
    images = tiny_data[0].images[:3].astype(np.float32)
    tokens = tf.constant(tiny_data[2].tokens[:3, :6])
    # The hard model's expectation (its default at test time) is the soft model's context.
    np.testing.assert_allclose(
        hard({"images": images, "tokens": tokens})["logits"],
        soft({"images": images, "tokens": tokens})["logits"],
        rtol=1e-5,
        atol=1e-5,
    )
    wider = make_tiny_model(tiny_data[1], attention_mode="hard")
    wider_config = {**wider.get_config()}
    wider_config["decoder"] = {
        **wider_config["decoder"],
        "config": {**wider_config["decoder"]["config"], "hidden_dim": 24},
    }
    wider = type(wider).from_config(wider_config)
    with pytest.raises(ModelLoadError, match=r"soft.keras: weight .* has shape"):
        initialize_from(wider, soft, "soft.keras")
