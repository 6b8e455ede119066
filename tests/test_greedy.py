"""Greedy decoding of a captioner whose weights are set by hand to spell a known sentence."""

import numpy as np
import tensorflow as tf

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.inference import generate_captions
from sat_tf.models import AttentionDecoder, Captioner, Encoder


def _hand_set_model():
    tokenizer = CaptionTokenizer(["alpha", "beta", "gamma"])  # ids 4, 5, 6
    vocab = tokenizer.vocabulary_size
    decoder = AttentionDecoder(vocab, embedding_dim=vocab, hidden_dim=4, attention_dim=2, dropout=0.0)
    model = Captioner(Encoder("small_cnn", image_size=16, small_cnn_filters=(2,)), decoder, tokenizer)
    for weight in decoder.weights:
        weight.assign(np.zeros(weight.shape, np.float32))
    decoder.embedding.embeddings.assign(3.0 * np.eye(vocab, dtype=np.float32))
    transitions = np.zeros((vocab, vocab), np.float32)
    for previous, following in [(1, 4), (4, 5), (5, 6), (6, 2)]:  # <start> alpha beta gamma <end>
        transitions[previous, following] = 10.0
    decoder.output_projection.kernel.assign(transitions)
    return model


def test_hand_set_weights_emit_the_expected_sentence():
    model = _hand_set_model()
    features = tf.constant(np.random.default_rng(0).normal(size=(2, 5, model.encoder.feature_dim)), tf.float32)
    decoded = generate_captions(model, features=features, max_length=10).best()
    np.testing.assert_array_equal(decoded.tokens, [[4, 5, 6, 2]] * 2)
    assert decoded.texts == ["alpha beta gamma"] * 2
    np.testing.assert_array_equal(decoded.lengths, [4, 4])
    # each step's logit vector is 10 * tanh(3) at the chosen word and 0 elsewhere
    peak = 10.0 * np.tanh(3.0)
    expected = peak - np.log(np.exp(peak) + model.tokenizer.vocabulary_size - 1)
    np.testing.assert_allclose(decoded.log_probs, expected, atol=1e-6)
    # zero attention weights give equal scores: uniform attention over the 5 regions
    np.testing.assert_allclose(decoded.alphas, 1.0 / 5, rtol=1e-5)


def test_max_length_stops_a_caption_without_end():
    model = _hand_set_model()
    features = tf.zeros([1, 64, model.encoder.feature_dim])
    decoded = generate_captions(model, features=features, max_length=2).best()
    np.testing.assert_array_equal(decoded.tokens, [[4, 5]])
    assert decoded.lengths.tolist() == [2] and decoded.texts == ["alpha beta"]
