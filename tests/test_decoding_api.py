"""The public decoding API: sampling, ensembles, <unk> filtering and compiled-function caching."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sat_tf.data.tokenizer import CaptionTokenizer
from sat_tf.inference import (
    BeamSampler,
    CaptionerEnsemble,
    GreedySampler,
    RandomSampler,
    compiled_decoder,
    generate_captions,
)
from sat_tf.inference.generate import forbidden_token_ids
from sat_tf.models import AttentionDecoder, Captioner, Encoder


def _random_model(seed, scale=3.0):
    keras.utils.set_random_seed(seed)
    tokenizer = CaptionTokenizer(["x", "y", "z"])  # 7 tokens with the specials
    decoder = AttentionDecoder(tokenizer.vocabulary_size, embedding_dim=4, hidden_dim=6, attention_dim=3, dropout=0.0)
    model = Captioner(Encoder("small_cnn", image_size=8, small_cnn_filters=(2,)), decoder, tokenizer)
    for weight in decoder.trainable_weights:  # sharpen the distributions so choices are clear
        weight.assign(weight.numpy() * scale)
    return model


@pytest.fixture(scope="module")
def model_a():
    return _random_model(3)


@pytest.fixture(scope="module")
def model_b():
    return _random_model(11)


def _features(seed, batch=3):
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, 16, 2)) * 2.0, tf.float32)


def _teacher_forced_log_probs(model, features, prefix):
    """log p(next word | prefix) [B, V] through the teacher-forcing path (not the step loop)."""
    start = np.full((features.shape[0], 1), model.tokenizer.start_id, np.int32)
    inputs = np.concatenate([start, prefix], axis=1).astype(np.int32)
    logits = model.decoder(features, tf.constant(inputs), training=False)["logits"].numpy()[:, -1]
    logits = logits.astype(np.float64)
    return (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )


def _numpy_ensemble_greedy(models, features, max_length):
    """Greedy decoding of the normalised mean of log-probabilities, recomputed from scratch per step."""
    end = models[0].tokenizer.end_id
    prefix = np.zeros((features.shape[0], 0), np.int32)
    for _ in range(max_length):
        mean = np.mean([_teacher_forced_log_probs(m, features, prefix) for m in models], axis=0)
        word = mean.argmax(axis=1).astype(np.int32)
        ended = (prefix == end).any(axis=1)
        word[ended] = models[0].tokenizer.pad_id
        prefix = np.concatenate([prefix, word[:, None]], axis=1)
        if ((prefix == end).any(axis=1)).all():
            break
    return prefix


def test_greedy_over_two_different_models_equals_the_numpy_reference(model_a, model_b):
    features = _features(0, batch=4)
    expected = _numpy_ensemble_greedy([model_a, model_b], features, max_length=5)
    decoded = generate_captions(CaptionerEnsemble([model_a, model_b]), features=features, max_length=5).best()
    np.testing.assert_array_equal(decoded.tokens, expected)
    # the two members alone disagree somewhere, so the ensemble is not just one of them
    alone = [generate_captions(m, features=features, max_length=5).best().tokens for m in (model_a, model_b)]
    assert not np.array_equal(alone[0], alone[1])


@pytest.mark.parametrize("sampler", [GreedySampler(), BeamSampler(3), BeamSampler(2, length_penalty=1.0)])
def test_ensemble_of_one_or_of_two_copies_equals_the_model(model_a, sampler):
    features = _features(1)
    alone = generate_captions(model_a, features=features, sampler=sampler, max_length=6)
    for members in ([model_a], [model_a, model_a]):
        together = generate_captions(CaptionerEnsemble(members), features=features, sampler=sampler, max_length=6)
        np.testing.assert_array_equal(together.tokens, alone.tokens)
        np.testing.assert_allclose(together.scores, alone.scores, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(together.alphas, alone.alphas, rtol=1e-5, atol=1e-6)


def test_ensemble_members_need_the_same_vocabulary(model_a):
    other = Captioner(
        Encoder("small_cnn", image_size=8, small_cnn_filters=(2,)),
        AttentionDecoder(6, embedding_dim=4, hidden_dim=6, attention_dim=3),
        CaptionTokenizer(["x", "w"]),
    )
    with pytest.raises(ValueError, match="different vocabulary"):
        CaptionerEnsemble([model_a, other])


def test_ensemble_decodes_images_through_each_members_encoder(model_a, model_b):
    images = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3)).astype(np.float32)
    ensemble = CaptionerEnsemble([model_a, model_b])
    from_images = generate_captions(ensemble, images=images, max_length=5).best()
    features = [m.encode(images) for m in (model_a, model_b)]
    from_features = generate_captions(ensemble, features=features, max_length=5).best()
    np.testing.assert_array_equal(from_images.tokens, from_features.tokens)


def test_sampling_is_seeded_and_records_the_models_log_probs(model_a):
    features = _features(2)
    sampler = RandomSampler(num_samples=4)
    first = generate_captions(model_a, features=features, sampler=sampler, max_length=6, seed=5)
    again = generate_captions(model_a, features=features, sampler=sampler, max_length=6, seed=5)
    other = generate_captions(model_a, features=features, sampler=sampler, max_length=6, seed=6)
    np.testing.assert_array_equal(first.tokens, again.tokens)
    assert not np.array_equal(first.tokens, other.tokens)
    assert first.tokens.shape[:2] == (3, 4)
    # each sampled word's recorded log-prob is the model's, recomputed by teacher forcing
    tokens = first.tokens.reshape(12, -1)
    repeated = tf.repeat(features, 4, axis=0)
    recorded = first.token_log_probs.reshape(12, -1)
    for t in range(tokens.shape[1]):
        expected = _teacher_forced_log_probs(model_a, repeated, tokens[:, :t])
        live = first.lengths.reshape(-1) > t
        np.testing.assert_allclose(recorded[live, t], expected[live, tokens[live, t]], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(recorded[~live, t], 0.0)
    np.testing.assert_allclose(first.log_probs, first.token_log_probs.sum(axis=2), rtol=1e-5)


def test_first_sampled_word_follows_the_model_distribution(model_a):
    features = _features(3, batch=1)
    draws = 4000
    samples = generate_captions(
        model_a, features=features, sampler=RandomSampler(num_samples=draws), max_length=1, seed=1
    )
    counts = np.bincount(samples.tokens[0, :, 0], minlength=model_a.tokenizer.vocabulary_size)
    expected = np.exp(_teacher_forced_log_probs(model_a, features, np.zeros((1, 0), np.int32))[0]) * draws
    # chi-square over words expected at least 5 times; 99.9% quantile for <= 6 degrees of freedom is 22.5
    keep = expected >= 5
    chi_square = float((((counts - expected) ** 2) / expected)[keep].sum())
    assert chi_square < 22.5, (counts, expected.round(1))
    assert counts[~keep].sum() <= max(10, 3 * expected[~keep].sum())


def test_top_k_one_and_a_cold_temperature_are_greedy(model_a):
    features = _features(4)
    greedy = generate_captions(model_a, features=features, max_length=6).best()
    for sampler in (RandomSampler(num_samples=2, top_k=1), RandomSampler(num_samples=2, temperature=1e-4)):
        sampled = generate_captions(model_a, features=features, sampler=sampler, max_length=6, seed=9)
        for k in range(2):
            np.testing.assert_array_equal(sampled.tokens[:, k, : greedy.tokens.shape[1]], greedy.tokens)


def test_top_k_restricts_draws_to_the_k_most_probable_words(model_a):
    features = _features(5, batch=1)
    samples = generate_captions(
        model_a, features=features, sampler=RandomSampler(num_samples=500, top_k=2), max_length=1, seed=3
    )
    log_probs = _teacher_forced_log_probs(model_a, features, np.zeros((1, 0), np.int32))[0]
    assert set(np.unique(samples.tokens[0, :, 0])) <= set(np.argsort(-log_probs)[:2].tolist())


def test_forbidding_unknown_never_emits_it(model_a):
    features = _features(6, batch=8)
    unk = model_a.tokenizer.unk_id
    # make <unk> the most probable word everywhere
    bias = model_a.decoder.output_projection.bias
    original = bias.numpy()
    bias.assign(original + 50.0 * np.eye(model_a.tokenizer.vocabulary_size, dtype=np.float32)[unk])
    try:
        plain = generate_captions(model_a, features=features, max_length=4).best()
        assert (plain.tokens == unk).any()
        for sampler in (GreedySampler(), BeamSampler(3), RandomSampler(3)):
            filtered = generate_captions(model_a, features=features, sampler=sampler, max_length=4, forbid_unknown=True)
            assert not (filtered.tokens == unk).any()
    finally:
        bias.assign(original)
    assert forbidden_token_ids(model_a, False) == ()


def test_a_second_call_does_not_retrace(model_a):
    features = _features(7, batch=5)
    sampler = BeamSampler(2)
    generate_captions(model_a, features=features, sampler=sampler, max_length=4, batch_size=3)
    function = compiled_decoder(model_a, BeamSampler(2), 4)  # equal samplers share the cached function
    traces = function.experimental_get_tracing_count()
    for seed in range(3):  # later epochs: same shapes, other seeds
        generate_captions(model_a, features=features, sampler=sampler, max_length=4, batch_size=3, seed=seed)
    assert function.experimental_get_tracing_count() == traces
    assert traces <= 2  # one trace per batch shape (3 and 2)


def test_sampler_configs_round_trip():
    for sampler in (GreedySampler(), BeamSampler(4, 0.7), RandomSampler(5, 0.8, 10)):
        assert type(sampler).from_config(sampler.get_config()) == sampler
    with pytest.raises(ValueError, match="beam_size"):
        BeamSampler(0)
    with pytest.raises(ValueError, match="temperature"):
        RandomSampler(temperature=0.0)
