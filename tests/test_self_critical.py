"""Self-critical training: the REINFORCE estimate against the exact gradient of the expected
reward on a problem small enough to enumerate every caption, and a run through the Trainer."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.models import AttentionDecoder, Captioner, Encoder
from sat_tf.training.self_critical import CiderReward, SelfCriticalTask, leave_one_out_baseline

MAX_LENGTH = 3


def _tiny_model():
    keras.utils.set_random_seed(5)
    tokenizer = CaptionTokenizer(["x", "y", "z"])  # 7 tokens with the specials
    decoder = AttentionDecoder(tokenizer.vocabulary_size, embedding_dim=3, hidden_dim=4, attention_dim=3, dropout=0.0)
    model = Captioner(Encoder("small_cnn", image_size=8, small_cnn_filters=(2,)), decoder, tokenizer)
    for weight in decoder.trainable_weights:
        weight.assign(weight.numpy() * 2.0)
    return model


def _reward(image_index, tokens, lengths):
    """Any deterministic function of the caption: +1 per "x" (id 4), +0.7 for exactly two tokens."""
    rewards = np.zeros(tokens.shape[:2], np.float32)
    for b in range(tokens.shape[0]):
        for k in range(tokens.shape[1]):
            caption = tokens[b, k, : lengths[b, k]]
            rewards[b, k] = float(np.sum(caption == 4)) + 0.7 * (len(caption) == 2)
    return rewards


def _every_caption(vocabulary: int, end: int):
    """All token sequences the sampler can produce: ended by <end> within MAX_LENGTH, or cut there."""
    others = [v for v in range(vocabulary) if v != end]
    for length in range(1, MAX_LENGTH + 1):
        for prefix in itertools.product(others, repeat=length - 1):
            yield list(prefix) + [end]
    yield from (list(p) for p in itertools.product(others, repeat=MAX_LENGTH))


def _exact_gradient(model, features):
    """grad of E[r] = sum_w p(w) r(w), every caption enumerated, through the teacher-forced path."""
    task = SelfCriticalTask(model, _reward, num_samples=2, max_length=MAX_LENGTH)
    captions = list(_every_caption(model.tokenizer.vocabulary_size, model.tokenizer.end_id))
    tokens = np.zeros((1, len(captions), MAX_LENGTH), np.int32)
    lengths = np.array([[len(c) for c in captions]], np.int32)
    for i, caption in enumerate(captions):
        tokens[0, i, : len(caption)] = caption
    rewards = tf.constant(_reward(None, tokens, lengths))
    variables = model.decoder.trainable_variables
    with tf.GradientTape() as tape:
        probabilities = tf.exp(task.sequence_log_probs(features, tf.constant(tokens), tf.constant(lengths)))
        expected = tf.reduce_sum(probabilities * rewards)
    np.testing.assert_allclose(float(tf.reduce_sum(probabilities)), 1.0, atol=1e-5)  # the enumeration is complete
    return np.concatenate([tf.reshape(g, [-1]).numpy() for g in tape.gradient(expected, variables)])


def _sampled_gradients(model, features, baseline, draws=80, samples=40):
    task = SelfCriticalTask(model, _reward, num_samples=samples, baseline=baseline, max_length=MAX_LENGTH, seed=3)
    variables = model.decoder.trainable_variables
    batch = {"features": features, "tokens": tf.zeros([1, 2], tf.int32), "image_index": tf.zeros([1], tf.int32)}

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            loss, _ = task.compute_caption_loss(batch, training=True)
        return tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, variables)], 0)

    return np.stack([gradient().numpy() for _ in range(draws)])


@pytest.mark.parametrize("baseline", ["none", "leave_one_out"])
def test_reinforce_estimate_matches_the_exact_gradient_of_the_expected_reward(baseline):
    model = _tiny_model()
    features = tf.constant(np.random.default_rng(0).normal(size=(1, 16, 2)), tf.float32)
    exact = -_exact_gradient(model, features)  # the loss is the negated reward
    estimates = _sampled_gradients(model, features, baseline)
    mean = estimates.mean(axis=0)
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.abs(exact).max() > 0.05  # a gradient worth estimating
    z = np.abs(mean - exact) / np.maximum(standard_error, 1e-6)
    assert np.all((z < 5.0) | (np.abs(mean - exact) < 1e-4)), (z.max(), np.abs(mean - exact).max())


def test_the_leave_one_out_baseline_lowers_the_variance():
    model = _tiny_model()
    features = tf.constant(np.random.default_rng(1).normal(size=(1, 16, 2)), tf.float32)
    plain = _sampled_gradients(model, features, "none", draws=40).var(axis=0, ddof=1).sum()
    baselined = _sampled_gradients(model, features, "leave_one_out", draws=40).var(axis=0, ddof=1).sum()
    assert baselined < 0.7 * plain, (baselined, plain)


def test_leave_one_out_baseline_by_value_and_cider_rewards():
    rewards = tf.constant([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    np.testing.assert_allclose(leave_one_out_baseline(rewards).numpy(), [[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]])
    # token-id CIDEr-D: a sample equal to the image's reference beats another image's caption
    tokens = np.array([[1, 4, 5, 2, 0], [1, 6, 6, 2, 0], [1, 4, 6, 5, 2]])
    reward = CiderReward.from_token_ids(tokens, np.array([4, 4, 5]), np.array([0, 1, 0]), end_id=2)
    samples = np.array([[[4, 5, 2], [6, 6, 2]]])
    scores = reward(np.array([0]), samples, np.array([[3, 3]]))
    assert scores[0, 0] > scores[0, 1] >= 0.0


def test_self_critical_training_raises_the_reward_through_the_trainer(tiny_data, tmp_path):
    from conftest import make_tiny_model

    from sat_tf.data.pipeline import encode_captions
    from sat_tf.training import TrainConfig, TrainingData, train

    data, tokenizer, captions = tiny_data
    reward = CiderReward.from_token_ids(captions.tokens, captions.lengths, captions.image_index, tokenizer.end_id)
    first_per_image = sorted({int(i): n for n, i in reversed(list(enumerate(captions.image_index)))}.values())
    per_image = encode_captions([data.records[n] for n in first_per_image], tokenizer)
    config = TrainConfig(batch_size=16, epochs=12, learning_rate=5e-3, bucket_by_length=False, log_every=1)
    result = train(
        lambda: make_tiny_model(tokenizer),
        TrainingData(data.images, per_image),
        config,
        tmp_path,
        verbose=False,
        build_task=lambda m: SelfCriticalTask(m, reward, num_samples=4, max_length=12),
    )
    rewards = [h["reward"] for h in result.history if "reward" in h]
    # the rise is +0.22 CIDEr on every kernel path (oneDNN, oneDNN at AVX2, Eigen): twice the bound
    assert len(rewards) >= 20 and np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.1, rewards
