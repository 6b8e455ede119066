"""A convolution and the inference-mode BatchNorm after it, run as one convolution with a bias."""

from __future__ import annotations

import keras
from keras import ops


class FoldedConvolution(keras.layers.Layer):
    """Runs `convolution` then `batch_norm` (inference mode) as one convolution plus a bias.

    BatchNorm in inference mode is an affine map per channel, so it folds into the convolution
    before it: kernel * s and bias beta - mean * s, with s = gamma / sqrt(variance + epsilon). The
    folded kernel and bias are computed from the two layers' variables at every call, so they
    follow the variables (a fine-tuned top block, a loaded checkpoint) and nothing is stored twice;
    that costs a few small ops on the weights against one fewer pass over every activation map,
    which is where a mobile network spends its time on a CPU (Keras 3's BatchNormalization is
    separate elementwise ops that TensorFlow's graph optimizer does not fuse into the convolution).

    The math is exact, gradients included (a convolution is linear in its kernel); the results
    differ from the two layers' only by float rounding.

    Args:
        convolution: a `keras.layers.Conv2D` or `keras.layers.DepthwiseConv2D` without activation.
        batch_norm: the `keras.layers.BatchNormalization` that reads its output (channels last).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> folded = FoldedConvolution(model.get_layer("stem_conv"), model.get_layer("stem_bn"))
        >>> folded(images)   # == stem_bn(stem_conv(images), training=False), up to rounding

    Reference:
        Jacob et al., "Quantization and Training of Neural Networks for Efficient
        Integer-Arithmetic-Only Inference", CVPR 2018, section 3.2 (batch normalization folding).
    """

    def __init__(self, convolution: keras.layers.Layer, batch_norm: keras.layers.BatchNormalization, **kwargs):
        kwargs.setdefault("name", f"{convolution.name}_folded")
        kwargs.setdefault("dtype", convolution.dtype_policy)
        super().__init__(**kwargs)
        if not isinstance(convolution, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kind = type(convolution).__name__
            raise TypeError(f"{convolution.name}: only Conv2D and DepthwiseConv2D fold, not {kind}")
        if convolution.activation not in (None, keras.activations.linear):
            raise ValueError(f"{convolution.name}: a convolution with an activation cannot take the BatchNorm after it")
        if convolution.data_format != "channels_last" or batch_norm.axis not in (-1, 3):
            raise ValueError(f"{convolution.name}: folding needs channels-last convolution and BatchNorm")
        self.convolution = convolution
        self.batch_norm = batch_norm
        self.depthwise = isinstance(convolution, keras.layers.DepthwiseConv2D)

    def folded_weights(self):
        """(kernel, bias) of the one convolution, in float32."""
        norm, conv = self.batch_norm, self.convolution
        scale = ops.rsqrt(ops.cast(norm.moving_variance, "float32") + norm.epsilon)
        if norm.scale:
            scale = scale * ops.cast(norm.gamma, "float32")
        bias = -ops.cast(norm.moving_mean, "float32") * scale
        if norm.center:
            bias = bias + ops.cast(norm.beta, "float32")
        if conv.use_bias:
            bias = bias + ops.cast(conv.bias, "float32") * scale
        kernel = ops.cast(conv.kernel, "float32")
        # Conv2D kernels are (k, k, in, out); depthwise ones (k, k, channels, multiplier) with
        # output channel c * multiplier + m, so the scale reshapes to (channels, multiplier).
        kernel = kernel * (ops.reshape(scale, (kernel.shape[2], kernel.shape[3])) if self.depthwise else scale)
        return kernel, bias

    def call(self, inputs):
        kernel, bias = self.folded_weights()
        kernel = ops.cast(kernel, self.compute_dtype)
        conv = self.convolution
        arguments = dict(strides=conv.strides, padding=conv.padding, dilation_rate=conv.dilation_rate)
        if self.depthwise:
            outputs = ops.depthwise_conv(inputs, kernel, **arguments)
        else:
            outputs = ops.conv(inputs, kernel, **arguments)
        return outputs + ops.cast(bias, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return self.convolution.compute_output_shape(input_shape)
