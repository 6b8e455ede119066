import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import fixed_batch, make_tiny_model

from sat_tf.training import CaptioningTask, TrainConfig, build_train_step


def test_keras_file_round_trip_gives_identical_outputs(tiny_data, tiny_model, tmp_path):
    batch = fixed_batch(tiny_data)
    expected = tiny_model(batch)
    path = tmp_path / "model.keras"
    tiny_model.save(path)
    loaded = keras.saving.load_model(path)
    actual = loaded(batch)
    np.testing.assert_array_equal(actual["logits"], expected["logits"])
    np.testing.assert_array_equal(actual["alphas"], expected["alphas"])
    assert loaded.tokenizer.vocabulary == tiny_model.tokenizer.vocabulary
    assert loaded.penalty_weight == tiny_model.penalty_weight


def test_loss_combines_cross_entropy_and_penalty(tiny_data, tiny_model):
    batch = fixed_batch(tiny_data)
    loss, logs = CaptioningTask(tiny_model).compute_caption_loss(batch)
    outputs = tiny_model(batch)
    targets = batch["tokens"].numpy()[:, 1:]
    mask = targets != 0
    log_probs = tf.nn.log_softmax(outputs["logits"]).numpy()
    cross_entropy = -np.sum(np.take_along_axis(log_probs, targets[..., None], -1)[..., 0] * mask) / mask.sum()
    per_region = (outputs["alphas"].numpy() * mask[..., None]).sum(axis=1)
    penalty = ((1.0 - per_region) ** 2).sum(axis=1).mean()
    np.testing.assert_allclose(logs["cross_entropy"], cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(logs["penalty"], penalty, rtol=1e-5)
    np.testing.assert_allclose(loss, cross_entropy + 0.01 * penalty, rtol=1e-5)
    assert float(logs["tokens"]) == mask.sum()


def test_overfits_a_tiny_batch(tiny_data):
    model = make_tiny_model(tiny_data[1], penalty_weight=0.0)
    batch = fixed_batch(tiny_data, size=4)
    config = TrainConfig(learning_rate=1e-2, clip_norm=None)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    step = build_train_step(model, optimizer, tf.distribute.get_strategy(), config)
    first = float(step(batch)["cross_entropy"])
    # until it memorises the batch (~250 steps on every kernel path), not for a fixed count
    losses = [float(step(batch)["cross_entropy"]) for _ in range(150)]
    while losses[-1] >= 0.05 and len(losses) < 1000:
        losses.append(float(step(batch)["cross_entropy"]))
    assert first > 2.0 and losses[-1] < 0.05, (first, losses[-1], len(losses))


@pytest.mark.parametrize("clip_norm", [None, 0.01])
def test_fit_and_custom_loop_give_the_same_loss_and_update(tiny_data, clip_norm):
    batch = fixed_batch(tiny_data)
    config = TrainConfig(learning_rate=1e-3, clip_norm=clip_norm)
    # model.fit path
    fit_model = make_tiny_model(tiny_data[1], seed=7)
    task = CaptioningTask(fit_model, clip_norm=clip_norm)
    task.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    history = task.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    # custom loop path, same initial weights
    loop_model = make_tiny_model(tiny_data[1], seed=7)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(loop_model.trainable_variables)
    logs = build_train_step(loop_model, optimizer, tf.distribute.get_strategy(), config)(batch)
    np.testing.assert_allclose(history.history["loss"][0], float(logs["loss"]), rtol=1e-6)
    for a, b in zip(fit_model.weights, loop_model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    if clip_norm is not None:  # the clip was active: the raw gradient is far larger than the bound
        assert float(logs["gradient_norm"]) > 10 * clip_norm


def test_fit_learns(tiny_data):
    model = make_tiny_model(tiny_data[1])
    task = CaptioningTask(model)
    task.compile(optimizer=keras.optimizers.Adam(1e-2))
    dataset = tf.data.Dataset.from_tensors(fixed_batch(tiny_data)).repeat(30)
    history = task.fit(dataset, epochs=2, verbose=0)
    # the second epoch's mean loss is about half the first's on every kernel path (2.34 -> 1.12)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


def test_a_captioner_alone_refuses_fit_and_points_to_the_task(tiny_data, tiny_model):
    tiny_model.compile(optimizer="adam")
    with pytest.raises(TypeError, match="CaptioningTask"):
        tiny_model.fit(tf.data.Dataset.from_tensors(fixed_batch(tiny_data)), epochs=1, verbose=0)


def test_task_config_round_trips(tiny_model):
    task = CaptioningTask(tiny_model, clip_norm=2.5)
    again = CaptioningTask.from_config(task.get_config())
    assert again.clip_norm == 2.5
    assert again.captioner.get_config()["decoder"] == tiny_model.get_config()["decoder"]
    with pytest.raises(ValueError, match="clip_norm"):
        CaptioningTask(tiny_model, clip_norm=0.0)
