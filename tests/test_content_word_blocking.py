"""Content words said once (`no_repeat_content_words`): which words count, the blocked words
against a direct Python reference, and wide beam search against exhaustive search over the
captions that say no content word twice."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from conftest import best_caption_by_exhaustive_search

from sat_tf.inference import BeamSampler, GreedySampler, RandomSampler, generate_captions
from sat_tf.inference.sampler import repeated_once_only_words
from sat_tf_edge.text import FUNCTION_WORDS, content_word_ids, repeated_content_words


@pytest.mark.parametrize(
    "caption, repeated",
    [
        ("a bathroom with a toilet and a toilet", ["toilet"]),
        ("a man sitting on a table with a vase of a vase", ["vase"]),
        ("a man and a woman are sitting on a bench", []),  # function words may come back
        ("two dogs and two cats on the grass", []),
        ("A train is on a train track next to a train", ["train"]),  # case-blind; once per word
    ],
)
def test_repeated_content_words(caption, repeated):
    assert repeated_content_words(caption) == repeated


def test_content_words_are_every_word_but_the_function_words_and_specials():
    vocabulary = ["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "on", "the", "grass", "two", "runs"]
    assert [vocabulary[i] for i in content_word_ids(vocabulary)] == ["dog", "grass", "runs"]
    assert {"a", "the", "of", "on", "with", "and", "is", "two"} <= FUNCTION_WORDS


def test_blocked_words_match_a_direct_reference():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 6, size=(2, 3, 7)).astype(np.int32)
    once_only = np.array([0, 0, 1, 0, 1, 1], np.float32)  # words 2, 4 and 5
    blocked = repeated_once_only_words(tf.constant(tokens), tf.constant(once_only)).numpy()
    for b, h in itertools.product(range(2), range(3)):
        expected = {w for w in tokens[b, h].tolist() if once_only[w]}
        assert set(np.flatnonzero(blocked[b, h])) == expected, (b, h)


def _says_a_word_twice(sequence, once_only):
    said = [token for token in sequence if token in once_only]
    return len(said) != len(set(said))


def test_wide_beam_saying_content_words_once_equals_exhaustive_search(random_model):
    features = tf.constant(np.random.default_rng(3).normal(size=(1, 16, 2)) * 2.0, tf.float32)
    max_length = 4
    vocabulary = random_model.tokenizer.vocabulary_size
    once_only = set(content_word_ids(random_model.tokenizer.vocabulary))
    assert once_only == {random_model.tokenizer.vocabulary.index(w) for w in ("x", "y")}
    best = best_caption_by_exhaustive_search(
        random_model, features, max_length, lambda s: not _says_a_word_twice(s, once_only)
    )
    result = generate_captions(
        random_model,
        features=features,
        max_length=max_length,
        no_repeat_content_words=True,
        sampler=BeamSampler(beam_size=vocabulary ** (max_length - 1)),
    )
    assert result.tokens[0, 0, : int(result.lengths[0, 0])].tolist() == best[1]
    np.testing.assert_allclose(result.scores[0, 0], best[0], rtol=1e-4)


@pytest.mark.parametrize("sampler", [GreedySampler(), BeamSampler(3), RandomSampler(num_samples=4)])
def test_no_caption_says_a_content_word_twice(repetitive_model, sampler):
    features = tf.constant(np.random.default_rng(1).normal(size=(8, 16, 2)), tf.float32)
    once_only = set(content_word_ids(repetitive_model.tokenizer.vocabulary))
    free = generate_captions(repetitive_model, features=features, max_length=8, sampler=sampler)
    blocked = generate_captions(
        repetitive_model, features=features, max_length=8, sampler=sampler, no_repeat_content_words=True
    )

    def rows(result):
        return [r[: int(n)].tolist() for rs, ns in zip(result.tokens, result.lengths) for r, n in zip(rs, ns)]

    assert any(_says_a_word_twice(row, once_only) for row in rows(free))  # else the test shows nothing
    assert not any(_says_a_word_twice(row, once_only) for row in rows(blocked))


def test_the_edge_runtime_says_content_words_once_as_the_library(repetitive_model, tmp_path):
    """The TFLite pair under the manifest's rule gives the library's captions token for token,
    and repeats itself without the rule (so the rule is what the test sees)."""
    from sat_tf.export.tflite import export_tflite
    from sat_tf_edge import EdgeCaptioner

    decoding = {"beam_size": 3, "no_repeat_content_words": True}
    export_tflite(repetitive_model, tmp_path, "fp32", "fp32", None, max_length=8, decoding=decoding)
    edge = EdgeCaptioner(tmp_path)
    assert edge.manifest.decoding["no_repeat_content_words"] is True
    images = np.random.default_rng(2).integers(0, 255, size=(4, 8, 8, 3)).astype(np.float32)
    library = generate_captions(
        repetitive_model, images=images, max_length=8, sampler=BeamSampler(3), no_repeat_content_words=True
    )
    once_only = set(edge.manifest.content_word_ids())
    for index in range(len(images)):
        pixels = images[index : index + 1]
        caption = edge.caption(pixels)
        expected = library.tokens[index, 0, : int(library.lengths[index, 0])].tolist()
        assert caption.tokens == expected
        assert not _says_a_word_twice(caption.tokens, once_only)
        assert _says_a_word_twice(edge.caption(pixels, no_repeat_content_words=False).tokens, once_only)
