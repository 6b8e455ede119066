import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import fixed_batch, make_tiny_model, weights_of

import sat_tf.training.trainer as trainer_module
from sat_tf.training import NonFiniteLossError, TrainConfig, TrainingData, build_train_step, train


def _one_step(tiny_data, strategy, config):
    with strategy.scope():
        model = make_tiny_model(tiny_data[1], seed=11)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, strategy, config)
    dataset = tf.data.Dataset.from_tensors(fixed_batch(tiny_data, size=8))
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    logs = step(batch)
    return float(logs["loss"]), float(logs["gradient_norm"]), weights_of(model)


def test_mirrored_step_equals_single_device_step(tiny_data):
    assert len(tf.config.list_logical_devices("CPU")) == 2  # set up in conftest.py
    # a clip norm below the gradient norm makes the test cover clipping of the global gradient
    config = TrainConfig(learning_rate=1e-2, clip_norm=0.1)
    single = _one_step(tiny_data, tf.distribute.get_strategy(), config)
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored = _one_step(tiny_data, mirrored_strategy, config)
    assert single[1] > 0.1  # clipping was active
    np.testing.assert_allclose(mirrored[0], single[0], rtol=1e-5)
    np.testing.assert_allclose(mirrored[1], single[1], rtol=1e-4)
    for a, b in zip(mirrored[2], single[2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _train(tiny_data, output_dir, resume=False, attention_mode="soft"):
    data, tokenizer, captions = tiny_data
    config = TrainConfig(
        batch_size=8, epochs=2, learning_rate=3e-3, schedule="cosine", warmup_steps=2, checkpoint_every=3, seed=4
    )

    # group normalisation: bucketing by length is safe with it (see build_small_cnn)
    def build():
        return make_tiny_model(tokenizer, dropout=0.3, seed=2, normalization="group", attention_mode=attention_mode)

    return train(build, TrainingData(data.images, captions), config, output_dir, resume=resume, verbose=False)


@pytest.mark.parametrize("attention_mode", ["soft", "hard"])
def test_resume_after_interrupt_matches_uninterrupted_run(tiny_data, tmp_path, monkeypatch, attention_mode):
    # Hard attention also carries the REINFORCE baseline and the location sampler's RNG state.
    reference = _train(tiny_data, tmp_path / "reference", attention_mode=attention_mode)
    assert reference.steps >= 8

    real_builder = trainer_module.build_train_step

    def interrupted_builder(*args, **kwargs):
        step, calls = real_builder(*args, **kwargs), []

        def step_then_crash(batch):
            calls.append(1)
            if len(calls) == 7:  # checkpoint at step 6; step 7 is lost and must be replayed
                raise KeyboardInterrupt("simulated kill")
            return step(batch)

        return step_then_crash

    monkeypatch.setattr(trainer_module, "build_train_step", interrupted_builder)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_data, tmp_path / "resumed", attention_mode=attention_mode)
    monkeypatch.setattr(trainer_module, "build_train_step", real_builder)
    resumed = _train(tiny_data, tmp_path / "resumed", resume=True, attention_mode=attention_mode)
    assert resumed.steps == reference.steps
    names = [w.path for w in reference.model.weights]
    for name, a, b in zip(names, weights_of(resumed.model), weights_of(reference.model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)
    assert (tmp_path / "resumed" / "model.keras").is_file()


def test_non_finite_loss_stops_with_the_step(tiny_data, tmp_path):
    data, tokenizer, captions = tiny_data

    def broken_model():
        model = make_tiny_model(tokenizer)
        model.penalty_weight = float("nan")
        return model

    config = TrainConfig(batch_size=8, epochs=1, bucket_by_length=False)
    with pytest.raises(NonFiniteLossError, match="at step 1"):
        train(broken_model, TrainingData(data.images, captions), config, tmp_path, verbose=False)


def test_batch_norm_with_length_buckets_warns(tiny_data, tmp_path):
    data, tokenizer, captions = tiny_data
    config = TrainConfig(batch_size=8, epochs=1, max_steps=1, bucket_by_length=True)
    with pytest.warns(UserWarning, match="batch statistics reveal"):
        train(lambda: make_tiny_model(tokenizer), TrainingData(data.images, captions), config, tmp_path, verbose=False)


def test_model_selection_keeps_the_best_epoch_and_stops_early(tiny_data, tmp_path):
    data, tokenizer, captions = tiny_data
    scores = iter([10.0, 30.0, 20.0, 25.0, 5.0, 50.0])  # best at epoch 2; patience 2 stops after epoch 4
    seen = []

    def validate(model):
        seen.append(model.decoder.output_projection.kernel.numpy().copy())
        return next(scores)

    config = TrainConfig(batch_size=8, epochs=6, bucket_by_length=False, early_stopping_patience=2)
    result = train(
        lambda: make_tiny_model(tokenizer),
        TrainingData(data.images, captions),
        config,
        tmp_path,
        verbose=False,
        validate=validate,
    )
    assert len(seen) == 4  # epochs 1-4, then stopped
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["epoch"] == 2 and best["score"] == 30.0
    best_model = keras.saving.load_model(tmp_path / "best_model.keras")
    np.testing.assert_array_equal(best_model.decoder.output_projection.kernel.numpy(), seen[1])
    assert [h["validation_score"] for h in result.history if "validation_score" in h] == [10.0, 30.0, 20.0, 25.0]


def test_every_epoch_is_validated_including_the_last(tiny_data, tmp_path):
    data, tokenizer, captions = tiny_data
    calls = []
    config = TrainConfig(batch_size=8, epochs=3, bucket_by_length=False)
    train(
        lambda: make_tiny_model(tokenizer),
        TrainingData(data.images, captions),
        config,
        tmp_path,
        verbose=False,
        validate=lambda model: calls.append(1) or float(len(calls)),
    )
    assert len(calls) == 3
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 3


def test_train_runs_under_mirrored_strategy_and_resumes(tiny_data, tmp_path):
    data, tokenizer, captions = tiny_data
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = TrainConfig(batch_size=8, epochs=1, max_steps=3, bucket_by_length=False, checkpoint_every=2)
    first = train(
        lambda: make_tiny_model(tokenizer),
        TrainingData(data.images, captions),
        config,
        tmp_path,
        strategy=strategy,
        verbose=False,
        validate=lambda model: 1.0,
    )
    assert first.steps == 3 and (tmp_path / "model.keras").is_file()
    config.max_steps = 5
    resumed = train(
        lambda: make_tiny_model(tokenizer),
        TrainingData(data.images, captions),
        config,
        tmp_path,
        strategy=strategy,
        verbose=False,
        resume=True,
    )
    assert resumed.steps == 5
