"""BatchNorm folded into the convolution before it: the two layers' outputs and gradients, faster."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sat_tf.models.efficientnet_lite import build_efficientnet_lite, fold_batch_norm
from sat_tf.models.encoder import Encoder
from sat_tf.models.folded_convolution import FoldedConvolution


def _random_batch_norm(channels: int, seed: int, scale: bool = True, center: bool = True):
    norm = keras.layers.BatchNormalization(epsilon=1e-3, scale=scale, center=center)
    norm.build((None, 5, 5, channels))
    rng = np.random.default_rng(seed)
    values = {
        "gamma": rng.uniform(0.2, 2.0, channels),
        "beta": rng.normal(size=channels),
        "moving_mean": rng.normal(size=channels),
        "moving_variance": rng.uniform(0.05, 3.0, channels),
    }
    for variable in norm.weights:
        variable.assign(values[variable.name].astype(np.float32))
    return norm


def _randomize_statistics(model: keras.Model, seed: int) -> None:
    """Non-trivial BatchNorm statistics, so that a fold that drops any of them shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.2, channels).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.2, channels).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels).astype(np.float32))


@pytest.mark.parametrize(
    "convolution",
    [
        lambda: keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False),
        lambda: keras.layers.Conv2D(6, 1, padding="valid", use_bias=True),
        lambda: keras.layers.DepthwiseConv2D(5, strides=2, padding="same", use_bias=False),
        lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=True),
    ],
    ids=["conv-stride2", "conv-1x1-bias", "depthwise-stride2", "depthwise-multiplier2-bias"],
)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_folded_convolution_equals_the_two_layers_with_their_gradients(convolution, affine):
    convolution = convolution()
    images = tf.constant(np.random.default_rng(0).normal(size=(2, 9, 9, 4)).astype(np.float32))
    convolution.build(images.shape)
    if convolution.use_bias:
        convolution.bias.assign(np.random.default_rng(1).normal(size=convolution.bias.shape).astype(np.float32))
    channels = convolution.compute_output_shape(images.shape)[-1]
    norm = _random_batch_norm(channels, seed=2, scale=affine, center=affine)
    folded = FoldedConvolution(convolution, norm)

    with tf.GradientTape(persistent=True) as tape:
        expected = norm(convolution(images), training=False)
        actual = folded(images)
        expected_sum, actual_sum = tf.reduce_sum(expected**2), tf.reduce_sum(actual**2)
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    for variable in convolution.trainable_weights:
        expected_gradient = tape.gradient(expected_sum, variable).numpy()
        np.testing.assert_allclose(tape.gradient(actual_sum, variable).numpy(), expected_gradient, rtol=1e-3, atol=1e-3)
    # The fold reads the variables at each call: a changed kernel changes it (nothing was copied).
    convolution.kernel.assign(convolution.kernel * 2.0)
    np.testing.assert_allclose(
        folded(images).numpy(), norm(convolution(images), training=False).numpy(), rtol=1e-4, atol=1e-4
    )


def test_a_convolution_with_an_activation_is_refused():
    convolution = keras.layers.Conv2D(4, 3, activation="relu")
    convolution.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match="activation"):
        FoldedConvolution(convolution, _random_batch_norm(4, seed=0))


def test_folded_network_and_its_cuts_give_the_network_outputs_over_shared_variables():
    network = build_efficientnet_lite("efficientnet_lite0", include_top=True, image_size=96)
    _randomize_statistics(network, seed=3)
    folded = fold_batch_norm(network)
    batch_norms = [layer for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert not batch_norms, "every BatchNorm of EfficientNet-Lite follows a convolution"
    assert {id(v) for v in folded.weights} == {id(v) for v in network.weights}, "shared, not copied"

    images = np.random.default_rng(4).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    expected = network(images, training=False).numpy()
    np.testing.assert_allclose(folded(images, training=False).numpy(), expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(folded(images, training=True).numpy(), expected, rtol=1e-3, atol=1e-3)

    cut = keras.Model(network.inputs, network.get_layer("stage5_output").output)
    np.testing.assert_allclose(fold_batch_norm(cut)(images).numpy(), cut(images).numpy(), rtol=1e-3, atol=1e-3)


def test_encoder_inference_runs_the_folded_network_and_training_the_original():
    encoder = Encoder("efficientnet_lite0", image_size=64, fine_tune_top_blocks=2)
    _randomize_statistics(encoder.cnn, seed=5)
    images = np.random.default_rng(6).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    expected = encoder._regions(encoder.cnn(encoder._preprocess(tf.constant(images)), training=False)).numpy()
    np.testing.assert_allclose(encoder(images, training=False).numpy(), expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(encoder(images, training=True).numpy(), expected, rtol=1e-3, atol=1e-3)
    # Fine-tuning changes the top's variables; inference follows them.
    top_kernel = next(v for v in encoder.trainable_weights if "kernel" in v.path)
    top_kernel.assign(top_kernel * 0.5)
    expected = encoder._regions(encoder.cnn(encoder._preprocess(tf.constant(images)), training=False)).numpy()
    np.testing.assert_allclose(encoder(images, training=False).numpy(), expected, rtol=1e-3, atol=1e-3)
