import keras
import numpy as np
import tensorflow as tf

from sat_tf.models.attention import BahdanauAttention


def _numpy_attention(layer, features, hidden):
    w_a, w_h, b, v = (w.numpy() for w in (layer.feature_kernel, layer.hidden_kernel, layer.bias, layer.score_vector))
    scores = np.tanh(features @ w_a + b + (hidden @ w_h)[:, None, :]) @ v  # [B, L]
    alpha = np.exp(scores - scores.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    return (alpha[:, :, None] * features).sum(axis=1), alpha


def test_weights_sum_to_one_and_context_is_weighted_sum():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 7, 5)).astype(np.float32)
    hidden = rng.normal(size=(3, 6)).astype(np.float32)
    layer = BahdanauAttention(4)
    context, alpha = layer(features, hidden)
    np.testing.assert_allclose(np.sum(alpha, axis=1), 1.0, rtol=1e-6)
    expected_context, expected_alpha = _numpy_attention(layer, features, hidden)
    np.testing.assert_allclose(alpha, expected_alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, expected_context, rtol=1e-5, atol=1e-5)


def test_precomputed_projection_gives_the_same_result():
    rng = np.random.default_rng(1)
    features = tf.constant(rng.normal(size=(2, 9, 3)), tf.float32)
    hidden = tf.constant(rng.normal(size=(2, 4)), tf.float32)
    layer = BahdanauAttention(5)
    direct = layer(features, hidden)
    reused = layer(features, hidden, projected_features=layer.project_features(features))
    for a, b in zip(direct, reused):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_serialization_round_trip():
    layer = BahdanauAttention(7, name="att")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, BahdanauAttention) and clone.units == 7 and clone.name == "att"
