"""Checkpoint averaging (`sat_tf.workflows.models.average_checkpoints`) on a real training run's
checkpoints: the averaged model's weights are the element-wise mean of the weights the run had
at those checkpoints (recorded independently, at each epoch's validation)."""

import keras
import numpy as np
import pytest
from conftest import make_tiny_model

from sat_tf.models.config import ModelConfig, build_captioner
from sat_tf.training import TrainConfig, TrainingData, train
from sat_tf.workflows.models import ModelLoadError, average_checkpoints, load_captioner, save_captioner


@pytest.fixture(scope="module")
def three_epoch_run(tiny_data, tmp_path_factory):
    """A 3-epoch run (6 steps per epoch, a checkpoint at each epoch end) and the weights at each
    epoch end (in `model.weights` order; the loaded model's layer names may carry other suffixes)."""
    data, tokenizer, captions = tiny_data
    output_dir = tmp_path_factory.mktemp("run")
    epoch_weights = []

    def record(model):
        epoch_weights.append([w.numpy().copy() for w in model.weights])
        return float(len(epoch_weights))

    config = TrainConfig(batch_size=8, epochs=3, bucket_by_length=False, learning_rate=1e-2, keep_checkpoints=5)
    train(
        lambda: make_tiny_model(tokenizer, dropout=0.5),
        TrainingData(data.images, captions),
        config,
        output_dir,
        verbose=False,
        validate=record,
    )
    return output_dir, epoch_weights


def test_average_is_the_mean_of_the_checkpoints_weights(three_epoch_run, tmp_path):
    run, epoch_weights = three_epoch_run
    checkpoints = [run / "checkpoints" / "ckpt-12", run / "checkpoints" / "ckpt-18"]  # ends of epochs 2 and 3
    averaged = average_checkpoints(run / "model.keras", checkpoints)
    assert len(averaged.weights) == len(epoch_weights[2])
    compared = 0
    for weight, second, third in zip(averaged.weights, epoch_weights[1], epoch_weights[2]):
        if not keras.backend.is_float_dtype(weight.dtype):
            continue
        np.testing.assert_allclose(weight.numpy(), (second + third) / 2, rtol=1e-6, atol=1e-7, err_msg=weight.path)
        compared += 1
    assert compared > 10
    # The weights did move between the two epochs, so the mean is neither of them.
    kernel = averaged.decoder.output_projection.kernel
    kernel_index = [id(w) for w in averaged.weights].index(id(kernel))
    assert not np.allclose(kernel.numpy(), epoch_weights[2][kernel_index], atol=1e-4)
    # Saved and loaded back, it is the same model.
    reloaded = load_captioner(save_captioner(averaged, tmp_path / "averaged.keras"))
    np.testing.assert_array_equal(reloaded.decoder.output_projection.kernel.numpy(), kernel.numpy())


def test_one_checkpoint_gives_that_checkpoints_weights(three_epoch_run):
    run, epoch_weights = three_epoch_run
    averaged = average_checkpoints(run / "model.keras", [run / "checkpoints" / "ckpt-6"])
    for weight, expected in zip(averaged.weights, epoch_weights[0]):
        if keras.backend.is_float_dtype(weight.dtype):
            np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-6, err_msg=weight.path)


def test_a_missing_or_foreign_checkpoint_is_refused_by_name(three_epoch_run, tiny_data, tmp_path):
    run, _ = three_epoch_run
    with pytest.raises(ModelLoadError, match="ckpt-999"):
        average_checkpoints(run / "model.keras", [run / "checkpoints" / "ckpt-999"])
    # A run of a model with other layer sizes: its checkpoint does not fit.
    data, tokenizer, captions = tiny_data
    other = tmp_path / "other"
    wider = ModelConfig(
        image_size=32, cnn_filters=(4, 8, 8), append_coordinates=True, embedding_dim=8, hidden_dim=24, attention_dim=8
    )
    train(
        lambda: build_captioner(wider, tokenizer),
        TrainingData(data.images, captions),
        TrainConfig(batch_size=8, epochs=1, bucket_by_length=False),
        other,
        verbose=False,
    )
    with pytest.raises(ModelLoadError, match="other/checkpoints/ckpt-6"):
        average_checkpoints(run / "model.keras", [other / "checkpoints" / "ckpt-6"])
    with pytest.raises(ModelLoadError, match="no checkpoints"):
        average_checkpoints(run / "model.keras", [])
