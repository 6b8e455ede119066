"""Stochastic hard attention: sampling, the REINFORCE estimator against exact enumeration, the
baseline, the entropy bonus and the expectation switch, and that it trains and decodes."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import fixed_batch, make_tiny_model

from sat_tf.inference import BeamSampler, generate_captions
from sat_tf.models.decoder import AttentionDecoder
from sat_tf.models.hard_attention import (
    attention_entropy,
    location_log_likelihood,
    reinforce_surrogate,
    sample_locations,
    updated_baseline,
)
from sat_tf.training import CaptioningTask, TrainConfig, build_train_step

REGIONS, STEPS = 3, 2


def _hard_decoder(expectation_probability=0.0, seed=0):
    keras.utils.set_random_seed(seed)
    decoder = AttentionDecoder(
        5,
        embedding_dim=3,
        hidden_dim=4,
        attention_dim=3,
        dropout=0.0,
        attention_mode="hard",
        expectation_probability=expectation_probability,
    )
    decoder.build((None, REGIONS, 2))
    return decoder


def _problem(copies):
    """One image of 3 regions and one caption of 2 targets, repeated `copies` times."""
    features = np.array([[[1.0, -0.5], [0.2, 0.8], [-1.0, 0.3]]], np.float32) * 2.0
    tokens = np.array([[1, 3, 4]])  # <start> w3 w4 (targets: w3, w4)
    return tf.constant(np.repeat(features, copies, 0)), tf.constant(np.repeat(tokens, copies, 0))


def _log_likelihoods(decoder, outputs, tokens):
    targets = tokens[:, 1:]
    mask = tf.ones_like(targets, tf.bool)
    token_ll = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=outputs["logits"])
    return tf.reduce_sum(token_ll, axis=1), location_log_likelihood(outputs["alphas"], outputs["locations"], mask), mask


def _exact_gradient(decoder):
    """dL_s/dW with L_s = sum_s p(s|a) log p(y|s,a), enumerating all 3^2 location sequences."""
    sequences = np.array(list(itertools.product(range(REGIONS), repeat=STEPS)), np.int32)
    features, tokens = _problem(len(sequences))
    with tf.GradientTape() as tape:
        outputs = decoder.teacher_forcing(features, tokens[:, :-1], training=False, locations=sequences)
        caption_ll, locations_ll, _ = _log_likelihoods(decoder, {**outputs, "locations": sequences}, tokens)
        bound = tf.reduce_sum(tf.exp(locations_ll) * caption_ll)
    np.testing.assert_allclose(tf.reduce_sum(tf.exp(locations_ll)), 1.0, rtol=1e-5)  # a distribution
    gradients = tape.gradient(bound, decoder.trainable_variables)
    return float(bound), np.concatenate([tf.convert_to_tensor(g).numpy().ravel() for g in gradients])


def _estimates(decoder, baseline, batches, samples_per_batch):
    """Batch means of the paper's Monte-Carlo gradient (lambda_r = 1, lambda_e = 0)."""
    features, tokens = _problem(samples_per_batch)

    @tf.function
    def batch_gradient():
        with tf.GradientTape() as tape:
            outputs = decoder.teacher_forcing(features, tokens[:, :-1], training=True)
            caption_ll, locations_ll, mask = _log_likelihoods(decoder, outputs, tokens)
            entropy = attention_entropy(outputs["alphas"], mask)
            surrogate = reinforce_surrogate(caption_ll, locations_ll, entropy, baseline, 1.0, 0.0)
            objective = tf.reduce_mean(surrogate)
        gradients = tape.gradient(objective, decoder.trainable_variables)
        return tf.concat([tf.reshape(tf.convert_to_tensor(g), [-1]) for g in gradients], 0)

    return np.stack([batch_gradient().numpy() for _ in range(batches)])


def test_reinforce_estimate_matches_exact_gradient_and_baseline_lowers_variance():
    decoder = _hard_decoder()
    bound, exact = _exact_gradient(decoder)
    batches, per_batch = 200, 32
    plain = _estimates(decoder, 0.0, batches, per_batch)
    with_baseline = _estimates(decoder, bound, batches, per_batch)
    for estimates in (plain, with_baseline):
        mean = estimates.mean(axis=0)
        standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(batches)
        informative = standard_error > 1e-7
        assert informative.sum() > 20
        z = np.abs(mean - exact)[informative] / standard_error[informative]
        assert z.max() < 5.0, f"estimate off the exact gradient by {z.max():.1f} standard errors"
        np.testing.assert_allclose(mean[~informative], exact[~informative], atol=1e-5)
    # Same mean (checked above against the same exact value); lower variance with the baseline.
    assert with_baseline.var(axis=0).sum() < 0.5 * plain.var(axis=0).sum()


def test_sampled_locations_follow_alpha():
    alpha = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    draws = 20000
    uniform = np.random.default_rng(7).uniform(size=draws).astype(np.float32)
    locations = sample_locations(tf.constant(np.tile(alpha, (draws, 1))), tf.constant(uniform)).numpy()
    counts = np.bincount(locations, minlength=4)
    chi_square = ((counts - draws * alpha) ** 2 / (draws * alpha)).sum()
    assert chi_square < 16.27  # chi-square, 3 degrees of freedom, p = 0.001
    # The decoder's own training-time draws (its seed generator) give the same distribution.
    decoder = _hard_decoder()
    features, tokens = _problem(4000)
    outputs = decoder.teacher_forcing(features, tokens[:, :-1], training=True)
    first_alpha = outputs["alphas"][0, 0].numpy()
    counts = np.bincount(outputs["locations"][:, 0].numpy(), minlength=REGIONS)
    expected = 4000 * first_alpha
    assert ((counts - expected) ** 2 / expected).sum() < 13.82  # 2 degrees of freedom, p = 0.001


def test_entropy_and_location_log_likelihood_by_value():
    alphas = np.array([[[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]], np.float32)
    mask = np.array([[True, True, False]])
    expected_entropy = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)) + 0.0
    np.testing.assert_allclose(attention_entropy(alphas, mask), [expected_entropy], rtol=1e-6)
    locations = np.array([[1, 0, 2]])
    np.testing.assert_allclose(
        location_log_likelihood(alphas, locations, mask), [np.log(0.25) + np.log(1.0)], rtol=1e-6
    )
    surrogate = reinforce_surrogate(tf.constant([-3.0]), tf.constant([-2.0]), tf.constant([1.5]), -1.0, 0.1, 0.002)
    np.testing.assert_allclose(surrogate, [-3.0 + 0.1 * (-2.0) * (-2.0) + 0.002 * 1.5], rtol=1e-6)
    np.testing.assert_allclose(updated_baseline(tf.constant(2.0), tf.constant(-8.0)), 0.9 * 2.0 + 0.1 * -8.0)


def test_expectation_switch_is_a_fair_coin_and_gives_the_soft_context():
    decoder = _hard_decoder(expectation_probability=0.5)
    features, tokens = _problem(3)
    run = tf.function(lambda: decoder.teacher_forcing(features, tokens[:, :-1], training=True))
    flags = []
    soft = AttentionDecoder.from_config({**decoder.get_config(), "attention_mode": "soft"})
    soft.build((None, REGIONS, 2))
    soft.set_weights(decoder.get_weights())
    soft_logits = soft.teacher_forcing(features, tokens[:, :-1])["logits"].numpy()
    for _ in range(400):
        outputs = run()
        flags.append(bool(outputs["used_expectation"]))
        if flags[-1]:
            np.testing.assert_allclose(outputs["logits"], soft_logits, rtol=1e-5, atol=1e-6)
        else:  # the sampled locations were the ones used
            replay = decoder.teacher_forcing(features, tokens[:, :-1], locations=outputs["locations"])
            np.testing.assert_allclose(outputs["logits"], replay["logits"], rtol=1e-5, atol=1e-6)
    assert 160 <= sum(flags) <= 240  # Binomial(400, 0.5): mean 200, sd 10


@pytest.mark.parametrize("expectation_probability", [0.0, 1.0])
def test_baseline_moves_only_after_samples(tiny_data, expectation_probability):
    model = make_tiny_model(tiny_data[1], attention_mode="hard", expectation_probability=expectation_probability)
    model.reward_baseline.assign(-2.0)
    batch = fixed_batch(tiny_data)
    _, logs = CaptioningTask(model).compute_caption_loss(batch, training=True)
    captions = float(batch["tokens"].shape[0])
    mean_log_likelihood = -float(logs["cross_entropy"]) * float(logs["tokens"]) / captions
    expected = -2.0 if expectation_probability == 1.0 else 0.9 * -2.0 + 0.1 * mean_log_likelihood
    np.testing.assert_allclose(float(model.reward_baseline), expected, rtol=1e-5)


def test_hard_attention_trains_decodes_and_round_trips(tiny_data, tmp_path):
    model = make_tiny_model(tiny_data[1], attention_mode="hard", dropout=0.1)
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, tf.distribute.get_strategy(), TrainConfig(clip_norm=5.0))
    batch = fixed_batch(tiny_data, size=16)
    # REINFORCE samples make the curve noisy: train until the last 5 steps' mean is below 80% of the
    # first 5's (after 30 steps it is ~64% on every kernel path), not for a fixed count
    losses = [float(step(batch)["cross_entropy"]) for _ in range(30)]
    while np.mean(losses[-5:]) >= 0.8 * np.mean(losses[:5]) and len(losses) < 150:
        losses.append(float(step(batch)["cross_entropy"]))
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    images = batch["images"][:4]
    for mode in ("argmax", "sample", "expectation"):
        model.decoder.hard_inference = mode
        greedy = generate_captions(model, images=images, max_length=12).best()
        beam = generate_captions(model, images=images, sampler=BeamSampler(2), max_length=12)
        assert len(greedy.texts) == 4 and len(beam.best_texts) == 4
        assert np.allclose(greedy.alphas.sum(-1)[greedy.tokens > 0], 1.0, atol=1e-5)
    model.decoder.hard_inference = "argmax"
    path = tmp_path / "hard.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.decoder.attention_mode == "hard" and loaded.reward_baseline is not None
    np.testing.assert_allclose(float(loaded.reward_baseline), float(model.reward_baseline))
    reloaded = generate_captions(loaded, images=images, max_length=12).best().texts
    assert reloaded == generate_captions(model, images=images, max_length=12).best().texts


def test_hard_attention_trains_with_model_fit(tiny_data):
    model = make_tiny_model(tiny_data[1], attention_mode="hard")
    task = CaptioningTask(model)
    task.compile(optimizer=keras.optimizers.Adam(1e-2))
    batch = fixed_batch(tiny_data, size=16)
    dataset = tf.data.Dataset.from_tensors(batch).repeat(20)
    history = task.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert float(model.reward_baseline) < 0.0  # updated from sampled minibatches (log-likelihoods < 0)


def test_hard_attention_decoder_step_exports_to_tflite(tiny_data, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from sat_tf.export.tflite import export_tflite

    model = make_tiny_model(tiny_data[1], attention_mode="hard")
    model.decoder.hard_inference = "sample"
    with pytest.raises(ValueError, match="sample"):
        export_tflite(model, tmp_path / "refused")
    model.decoder.hard_inference = "argmax"
    paths = export_tflite(model, tmp_path / "edge", "fp32", "fp32")
    encode = Interpreter(model_path=str(paths["encoder"])).get_signature_runner("encode")
    step = Interpreter(model_path=str(paths["decoder"])).get_signature_runner("step")
    image = tiny_data[0].images[:1].astype(np.float32)
    encoded = encode(image=image)
    out = step(
        **{k: encoded[k] for k in ("attention_keys", "context_gates", "context_outputs", "hidden", "cell")},
        previous_token=np.array([1], np.int32),
    )
    features = model.encode(image)
    expected = model.decoder.step(
        model.decoder.step_constants(features), model.decoder.initial_state(features), tf.constant([1])
    )
    np.testing.assert_allclose(out["log_probs"], expected.log_probs, atol=1e-4)
