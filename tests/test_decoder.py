import keras
import numpy as np
import pytest
import tensorflow as tf

from sat_tf.models.decoder import AttentionDecoder, DecoderState


def _decoder(vocabulary_size=11, feature_dim=6, regions=5, gate=True):
    keras.utils.set_random_seed(0)
    decoder = AttentionDecoder(
        vocabulary_size, embedding_dim=4, hidden_dim=7, attention_dim=3, dropout=0.5, use_gate=gate
    )
    decoder.build((None, regions, feature_dim))
    return decoder


def test_teacher_forcing_equals_step_by_step_decoding():
    decoder = _decoder()
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(2, 5, 6)), tf.float32)
    tokens = tf.constant(rng.integers(0, 11, size=(2, 4)), tf.int32)
    outputs = decoder.teacher_forcing(features, tokens, training=False)
    logits, alphas = outputs["logits"], outputs["alphas"]
    constants = decoder.step_constants(features)
    state = decoder.initial_state(features)
    for t in range(4):
        out = decoder.step(constants, state, tokens[:, t])
        np.testing.assert_allclose(out.log_probs, tf.nn.log_softmax(logits[:, t]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out.alpha, alphas[:, t], rtol=1e-5, atol=1e-6)
        state = out.state
    assert isinstance(state, DecoderState)


@pytest.mark.parametrize("gate", [True, False])
def test_teacher_forcing_gradients_equal_step_by_step_gradients(gate):
    """The training recurrence's hand-written matmul gradient (`_loop_matmul`), split and TensorArray
    reads against plain autodiff through the inference `step` (plain matmuls, no custom gradient)."""
    decoder = _decoder(gate=gate)
    rng = np.random.default_rng(1)
    features = tf.constant(rng.normal(size=(3, 5, 6)), tf.float32)
    tokens = tf.constant(rng.integers(0, 11, size=(3, 5)), tf.int32)
    targets = tf.constant(rng.integers(0, 11, size=(3, 5)), tf.int32)

    def loss_of(log_probs):  # [B, T, V]
        return -tf.reduce_sum(tf.gather(log_probs, targets, batch_dims=2) * tf.range(1.0, 6.0))

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        fused = loss_of(tf.nn.log_softmax(decoder.teacher_forcing(features, tokens)["logits"]))
        constants, state, per_step = decoder.step_constants(features), decoder.initial_state(features), []
        for t in range(5):
            out = decoder.step(constants, state, tokens[:, t])
            per_step.append(out.log_probs)
            state = out.state
        reference = loss_of(tf.stack(per_step, axis=1))
    np.testing.assert_allclose(fused, reference, rtol=1e-5)
    sources = [features, *decoder.trainable_variables]
    for source, got, expected in zip(sources, tape.gradient(fused, sources), tape.gradient(reference, sources)):
        name = getattr(source, "path", "features")
        if expected is None:  # the step never reads the unused gate kernel when use_gate=False
            assert got is None or not np.any(tf.convert_to_tensor(got)), name
            continue
        np.testing.assert_allclose(
            tf.convert_to_tensor(got), tf.convert_to_tensor(expected), rtol=1e-4, atol=1e-5, err_msg=name
        )


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_step_matches_a_numpy_reference_of_the_paper_equations():
    """One step written out with the unfused per-term weights; pins the fused kernels' layout."""
    decoder = _decoder()
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 5, 6)).astype(np.float32)
    h = rng.normal(size=(2, 7)).astype(np.float32)
    c = rng.normal(size=(2, 7)).astype(np.float32)
    tokens = np.array([1, 8])
    out = decoder.step(
        decoder.step_constants(tf.constant(a)), DecoderState(tf.constant(h), tf.constant(c)), tf.constant(tokens)
    )
    att = decoder.attention
    scores = (
        np.tanh(a @ att.feature_kernel.numpy() + att.bias.numpy() + (h @ att.hidden_kernel.numpy())[:, None, :])
        @ att.score_vector.numpy()
    )
    alpha = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    gate_kernel, gate_bias = (w.numpy() for w in decoder.gate.weights)
    z = _sigmoid(h @ gate_kernel + gate_bias) * np.einsum("bl,bld->bd", alpha, a)
    e = decoder.embedding.embeddings.numpy()[tokens]
    gates = (
        e @ decoder.lstm_word_kernel.numpy()
        + z @ decoder.lstm_context_kernel.numpy()
        + h @ decoder.lstm_recurrent_kernel.numpy()
        + decoder.lstm_bias.numpy()
    )
    i, f, g, o = np.split(gates, 4, axis=1)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h_new = _sigmoid(o) * np.tanh(c_new)
    deep = np.tanh(e + h_new @ decoder.hidden_to_output.numpy() + z @ decoder.context_to_output.numpy())
    out_kernel, out_bias = (w.numpy() for w in decoder.output_projection.weights)
    logits = deep @ out_kernel + out_bias
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out.alpha, alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.state.cell, c_new, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.state.hidden, h_new, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.log_probs, log_probs, rtol=1e-5, atol=1e-5)


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
    eval_a = decoder(features, tokens, training=False)["logits"]
    eval_b = decoder(features, tokens, training=False)["logits"]
    train_logits = decoder(features, tokens, training=True)["logits"]
    np.testing.assert_array_equal(eval_a, eval_b)
    assert not np.allclose(eval_a, train_logits)


def test_serialization_round_trip():
    decoder = _decoder(gate=False)
    config = decoder.get_config()
    clone = AttentionDecoder.from_config(config)
    assert clone.get_config() == config
    assert clone.use_gate is False and clone.vocabulary_size == 11
