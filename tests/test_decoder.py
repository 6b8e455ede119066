import keras
import numpy as np
import tensorflow as tf

from sat_tf.models.decoder import AttentionDecoder, DecoderState


def _decoder(vocabulary_size=11, feature_dim=6, regions=5, gate=True):
    keras.utils.set_random_seed(0)
    decoder = AttentionDecoder(vocabulary_size, embedding_dim=4, hidden_dim=7, attention_dim=3, dropout=0.5,
                               use_gate=gate)
    decoder.build((None, regions, feature_dim))
    return decoder


def test_teacher_forcing_equals_step_by_step_decoding():
    decoder = _decoder()
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(2, 5, 6)), tf.float32)
    tokens = tf.constant(rng.integers(0, 11, size=(2, 4)), tf.int32)
    logits, alphas = decoder.teacher_forcing(features, tokens, training=False)
    projected = decoder.project_features(features)
    state = decoder.initial_state(features)
    for t in range(4):
        out = decoder.step(projected, features, state, tokens[:, t])
        np.testing.assert_allclose(out.log_probs, tf.nn.log_softmax(logits[:, t]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out.alpha, alphas[:, t], rtol=1e-5, atol=1e-6)
        state = out.state
    assert isinstance(state, DecoderState)


def test_initial_state_is_mlp_of_mean_annotation():
    decoder = _decoder()
    features = np.random.default_rng(1).normal(size=(3, 5, 6)).astype(np.float32)
    state = decoder.initial_state(tf.constant(features))
    mean = features.mean(axis=1)
    kernel, bias = (w.numpy() for w in decoder.init_hidden.weights)
    np.testing.assert_allclose(state.hidden, np.tanh(mean @ kernel + bias), rtol=1e-5, atol=1e-6)
    kernel, bias = (w.numpy() for w in decoder.init_cell.weights)
    np.testing.assert_allclose(state.cell, np.tanh(mean @ kernel + bias), rtol=1e-5, atol=1e-6)


def test_gate_scales_the_context():
    decoder = _decoder()
    features = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 6)), tf.float32)
    state = decoder.initial_state(features)
    embedding = decoder.embed(tf.constant([1, 2]))
    _, gated, _ = decoder.advance(decoder.project_features(features), features, state, embedding)
    raw, _ = decoder.attention(features, state.hidden)
    beta = decoder.gate(state.hidden).numpy()
    assert np.all((beta > 0) & (beta < 1))
    np.testing.assert_allclose(gated, beta * raw.numpy(), rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training():
    decoder = _decoder()
    features = tf.constant(np.ones((1, 5, 6)), tf.float32)
    tokens = tf.constant([[1, 4, 5]])
    eval_a, _ = decoder(features, tokens, training=False)
    eval_b, _ = decoder(features, tokens, training=False)
    train_logits, _ = decoder(features, tokens, training=True)
    np.testing.assert_array_equal(eval_a, eval_b)
    assert not np.allclose(eval_a, train_logits)


def test_serialization_round_trip():
    decoder = _decoder(gate=False)
    config = decoder.get_config()
    clone = AttentionDecoder.from_config(config)
    assert clone.get_config() == config
    assert clone.use_gate is False and clone.vocabulary_size == 11
