import keras
import numpy as np
import pytest

from sat_tf.models.encoder import Encoder


def test_small_cnn_regions_and_coordinate_channels():
    encoder = Encoder("small_cnn", image_size=32, small_cnn_filters=(4, 8, 8), append_coordinates=True)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3)).astype(np.uint8)
    features = encoder(images).numpy()
    assert features.shape == (2, 16, 10) and encoder.feature_grid() == (4, 4) and encoder.feature_dim == 10
    coords = features[0, :, -2:]
    np.testing.assert_allclose(coords[0], [-0.75, -0.75])  # row 0, column 0: (x, y)
    np.testing.assert_allclose(coords[3], [0.75, -0.75])  # row 0, column 3
    np.testing.assert_allclose(coords[12], [-0.75, 0.75])  # row 3, column 0
    np.testing.assert_array_equal(features[0, :, -2:], features[1, :, -2:])
    # other sizes are resized to the encoder's input size
    assert encoder(np.zeros((1, 40, 40, 3), np.uint8)).shape == (1, 16, 10)
    assert len(encoder.trainable_weights) > 0  # the from-scratch CNN is trained


def test_keras_applications_backbone_is_frozen_by_default_and_can_fine_tune_top_blocks():
    frozen = Encoder("mobilenet_v2", image_size=96, weights=None)
    assert frozen.compute_output_shape((None, 96, 96, 3)) == (None, 9, 1280)
    assert frozen(np.zeros((1, 96, 96, 3), np.float32)).shape == (1, 9, 1280)
    assert frozen.trainable_weights == []
    tuned = Encoder("mobilenet_v2", image_size=96, weights=None, fine_tune_top_blocks=2)
    trainable = {w.path for w in tuned.trainable_weights}
    assert trainable and all("bn" not in name.split("/")[-2].lower() for name in trainable)
    assert len(trainable) < len(tuned.cnn.weights) / 4


def test_local_weights_file_is_loaded(tmp_path):
    source = Encoder("mobilenet_v2", image_size=96, weights=None)
    path = str(tmp_path / "backbone.weights.h5")
    source.cnn.save_weights(path)
    loaded = Encoder("mobilenet_v2", image_size=96, weights=path)
    images = np.random.default_rng(1).uniform(0, 255, size=(1, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(images), source(images), rtol=1e-5, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        Encoder("mobilenet_v2", image_size=96, weights=str(tmp_path / "missing.h5"))


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'.*small_cnn"):
        Encoder("resnet9000")


def test_serialization_round_trip():
    encoder = Encoder("small_cnn", image_size=48, small_cnn_filters=(4, 4), append_coordinates=True)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(encoder))
    assert clone.get_config() == encoder.get_config()
    assert clone.compute_output_shape((None, 48, 48, 3)) == (None, 144, 6)
