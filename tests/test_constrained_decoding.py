"""Constrained beam search against exhaustive search on a tiny random model: the most probable
caption that contains at least one of the image's constraint words."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import sequence_log_prob

from sat_tf.inference import BeamSampler, ConstrainedBeamSampler, generate_captions

MAX_LENGTH = 3


def _exhaustive_constrained_best(model, features, words, length_penalty=0.0):
    """Every sequence that ends with <end> within MAX_LENGTH (or reaches it unfinished) and
    contains one of `words`, scored by log p / length**length_penalty."""
    import itertools

    vocabulary, end = model.tokenizer.vocabulary_size, model.tokenizer.end_id
    best = None
    for length in range(1, MAX_LENGTH + 1):
        for prefix in itertools.product([v for v in range(vocabulary) if v != end], repeat=length - 1):
            endings = [[end]] + ([[last] for last in range(vocabulary) if last != end] if length == MAX_LENGTH else [])
            for ending in endings:
                sequence = list(prefix) + ending
                if not set(sequence) & set(words):
                    continue
                log_prob = sequence_log_prob(model, features, sequence)
                score = log_prob / len(sequence) ** length_penalty
                if best is None or score > best[0]:
                    best = (score, log_prob, sequence)
    return best


def _constraint(model, words, images=1):
    mask = np.zeros([images, model.tokenizer.vocabulary_size], np.float32)
    mask[:, words] = 1.0
    return mask


@pytest.mark.parametrize("image_seed", [0, 1, 4])
@pytest.mark.parametrize("word_names", [["x"], ["y"], ["x", "y"]])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_constrained_beam_equals_exhaustive_search(random_model, image_seed, word_names, length_penalty):
    features = tf.constant(np.random.default_rng(image_seed).normal(size=(1, 16, 2)) * 2.0, tf.float32)
    words = [random_model.tokenizer.vocabulary.index(w) for w in word_names]
    vocabulary = random_model.tokenizer.vocabulary_size
    best_score, best_log_prob, best_sequence = _exhaustive_constrained_best(
        random_model, features, words, length_penalty
    )
    # with k = V^(max_length-1) per beam no prefix of either state is ever pruned: exact
    result = generate_captions(
        random_model,
        features=features,
        max_length=MAX_LENGTH,
        sampler=ConstrainedBeamSampler(vocabulary ** (MAX_LENGTH - 1), length_penalty),
        constraint_words=_constraint(random_model, words),
    )
    length = int(result.lengths[0, 0])
    assert result.tokens[0, 0, :length].tolist() == best_sequence
    np.testing.assert_allclose(result.scores[0, 0], best_score, rtol=1e-4)
    np.testing.assert_allclose(result.log_probs[0, 0], best_log_prob, rtol=1e-4)


def test_the_constraint_changes_the_caption_only_where_it_must(random_model):
    features = tf.constant(np.random.default_rng(7).normal(size=(6, 16, 2)) * 2.0, tf.float32)
    vocabulary = random_model.tokenizer.vocabulary_size
    free = generate_captions(
        random_model, features=features, max_length=MAX_LENGTH, sampler=BeamSampler(vocabulary ** (MAX_LENGTH - 1))
    )
    x = random_model.tokenizer.vocabulary.index("x")
    constrained = generate_captions(
        random_model,
        features=features,
        max_length=MAX_LENGTH,
        sampler=ConstrainedBeamSampler(vocabulary ** (MAX_LENGTH - 1)),
        constraint_words=_constraint(random_model, [x], images=6),
    )
    for image in range(6):
        free_tokens = free.tokens[image, 0, : int(free.lengths[image, 0])].tolist()
        tokens = constrained.tokens[image, 0, : int(constrained.lengths[image, 0])].tolist()
        assert x in tokens
        if x in free_tokens:  # already met: the unconstrained best is the constrained best
            assert tokens == free_tokens
        else:  # the constraint costs probability
            assert constrained.scores[image, 0] < free.scores[image, 0]


def test_constrained_greedy_meets_the_constraint_and_needs_its_words(random_model):
    features = tf.constant(np.random.default_rng(2).normal(size=(4, 16, 2)), tf.float32)
    y = random_model.tokenizer.vocabulary.index("y")
    result = generate_captions(
        random_model,
        features=features,
        max_length=6,
        sampler=ConstrainedBeamSampler(1),
        constraint_words=_constraint(random_model, [y], images=4),
    )
    assert all(y in row[: int(length)].tolist() for row, length in zip(result.tokens[:, 0], result.lengths[:, 0]))
    with pytest.raises(ValueError, match="constraint_words"):
        generate_captions(random_model, features=features, max_length=6, sampler=ConstrainedBeamSampler(1))
