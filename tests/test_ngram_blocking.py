"""No repeated n-grams (`no_repeat_ngram_size`) in the one decoding loop: the blocked words
against a direct Python reference, and wide beam search against exhaustive search over the
captions without a repeated n-gram."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from conftest import best_caption_by_exhaustive_search

from sat_tf.inference import (
    BeamSampler,
    GreedySampler,
    RandomSampler,
    generate_captions,
)
from sat_tf.inference.sampler import repeated_ngram_words


def _reference_blocked(row: list[int], step: int, n: int) -> set[int]:
    """Words w such that row[step-n+1:step] + [w] already occurs in row[:step]."""
    if step < n - 1:
        return set()
    suffix = row[step - n + 1 : step]
    return {row[j + n - 1] for j in range(0, step - n + 1) if row[j : j + n - 1] == suffix}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_blocked_words_match_a_direct_reference(n):
    rng = np.random.default_rng(n)
    tokens = rng.integers(0, 4, size=(2, 3, 9)).astype(np.int32)  # few words: many repeats
    for step in range(10):
        blocked = repeated_ngram_words(tf.constant(tokens), tf.constant(step), n, 4).numpy()
        for b, h in itertools.product(range(2), range(3)):
            expected = _reference_blocked(tokens[b, h].tolist(), step, n)
            assert set(np.flatnonzero(blocked[b, h])) == expected, (step, b, h)


def _has_repeat(sequence, n):
    grams = [tuple(sequence[i : i + n]) for i in range(len(sequence) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("image_seed", [0, 3])
def test_wide_beam_with_blocking_equals_exhaustive_search_without_repeats(random_model, image_seed):
    features = tf.constant(np.random.default_rng(image_seed).normal(size=(1, 16, 2)) * 2.0, tf.float32)
    max_length, n = 4, 2
    vocabulary = random_model.tokenizer.vocabulary_size
    best = best_caption_by_exhaustive_search(random_model, features, max_length, lambda s: not _has_repeat(s, n))
    result = generate_captions(
        random_model,
        features=features,
        max_length=max_length,
        no_repeat_ngram_size=n,
        sampler=BeamSampler(beam_size=vocabulary ** (max_length - 1)),
    )
    assert result.tokens[0, 0, : int(result.lengths[0, 0])].tolist() == best[1]
    np.testing.assert_allclose(result.scores[0, 0], best[0], rtol=1e-4)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("sampler", [GreedySampler(), BeamSampler(3), RandomSampler(num_samples=4)])
def test_no_caption_repeats_an_ngram(repetitive_model, sampler, n):
    features = tf.constant(np.random.default_rng(1).normal(size=(8, 16, 2)), tf.float32)
    free = generate_captions(repetitive_model, features=features, max_length=10, sampler=sampler)
    blocked = generate_captions(
        repetitive_model, features=features, max_length=10, sampler=sampler, no_repeat_ngram_size=n
    )
    assert any(
        _has_repeat(row[: int(length)].tolist(), n)
        for rows, lengths in zip(free.tokens, free.lengths)
        for row, length in zip(rows, lengths)
    )
    for rows, lengths in zip(blocked.tokens, blocked.lengths):
        for row, length in zip(rows, lengths):
            assert not _has_repeat(row[: int(length)].tolist(), n)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_edge_runtime_blocks_the_same_words_as_the_library(n):
    from sat_tf_edge.runtime import repeated_ngram_words as edge_blocked

    rng = np.random.default_rng(10 + n)
    for _ in range(20):
        length = int(rng.integers(0, 9))
        tokens = rng.integers(0, 4, size=length).tolist()
        buffer = tf.constant(np.array(tokens + [0] * (9 - length), np.int32)[np.newaxis, np.newaxis])
        library = repeated_ngram_words(buffer, tf.constant(length), n, 4).numpy()[0, 0]
        assert set(np.flatnonzero(library)) == set(edge_blocked(tokens, n)), (tokens, n)
