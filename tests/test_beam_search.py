"""Beam search against exhaustive search and greedy decoding on a tiny random model."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from conftest import sequence_log_prob

from sat_tf.inference import BeamSampler, generate_captions


def _exhaustive_best(model, features, max_length, length_penalty=0.0):
    """Every sequence that ends with <end> within max_length, or reaches max_length unfinished."""
    vocabulary, end = model.tokenizer.vocabulary_size, model.tokenizer.end_id
    candidates = []
    for length in range(1, max_length + 1):
        for prefix in itertools.product([v for v in range(vocabulary) if v != end], repeat=length - 1):
            candidates.append(list(prefix) + [end])
            if length == max_length:
                candidates.extend(list(prefix) + [last] for last in range(vocabulary) if last != end)
    scored = []
    for sequence in candidates:
        log_prob = sequence_log_prob(model, features, sequence)
        scored.append((log_prob / len(sequence) ** length_penalty, log_prob, sequence))
    return max(scored, key=lambda item: item[0])


@pytest.mark.parametrize("image_seed", [0, 1])
def test_wide_beam_equals_exhaustive_search(random_model, image_seed):
    features = tf.constant(np.random.default_rng(image_seed).normal(size=(1, 16, 2)) * 2.0, tf.float32)
    max_length, vocabulary = 3, random_model.tokenizer.vocabulary_size
    best_score, best_log_prob, best_sequence = _exhaustive_best(random_model, features, max_length)
    # with k = V^(max_length-1) no prefix is ever pruned, so beam search is exact
    result = generate_captions(
        random_model,
        features=features,
        max_length=max_length,
        sampler=BeamSampler(beam_size=vocabulary ** (max_length - 1)),
    )
    length = int(result.lengths[0, 0])
    assert result.tokens[0, 0, :length].tolist() == best_sequence
    np.testing.assert_allclose(result.scores[0, 0], best_score, rtol=1e-4)
    assert np.all(np.diff(result.scores[0]) <= 1e-6)  # k-best list is sorted


def test_length_penalty_ranks_by_normalised_score(random_model):
    features = tf.constant(np.random.default_rng(5).normal(size=(1, 16, 2)), tf.float32)
    max_length, vocabulary = 3, random_model.tokenizer.vocabulary_size
    best_score, best_log_prob, best_sequence = _exhaustive_best(random_model, features, max_length, 1.0)
    result = generate_captions(
        random_model,
        features=features,
        max_length=max_length,
        sampler=BeamSampler(vocabulary ** (max_length - 1), length_penalty=1.0),
    )
    np.testing.assert_allclose(result.scores[0, 0], best_score, rtol=1e-4)
    np.testing.assert_allclose(result.log_probs[0, 0], best_log_prob, rtol=1e-4)


def test_beam_of_one_equals_greedy(random_model):
    features = tf.constant(np.random.default_rng(2).normal(size=(4, 16, 2)), tf.float32)
    greedy = generate_captions(random_model, features=features, max_length=6).best()
    beam = generate_captions(random_model, features=features, max_length=6, sampler=BeamSampler(beam_size=1))
    steps = greedy.tokens.shape[1]
    np.testing.assert_array_equal(beam.tokens[:, 0, :steps], greedy.tokens)
    np.testing.assert_allclose(beam.scores[:, 0], greedy.log_probs.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(beam.alphas[:, 0, :steps], greedy.alphas, rtol=1e-5, atol=1e-6)
    assert beam.best_texts == greedy.texts
    best = beam.best()
    np.testing.assert_allclose(best.log_probs[:, :steps], greedy.log_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(best.lengths, greedy.lengths)
