"""Soft (deterministic) Bahdanau attention over image regions."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="sat_tf")
class BahdanauAttention(keras.layers.Layer):
    """Additive attention of "Show, Attend and Tell", section 3.1.2.

    e_ti = v^T tanh(W_a a_i + W_h h_{t-1} + b),  alpha_t = softmax_i(e_t),  z_t = sum_i alpha_ti a_i.

    `W_a a_i + b` does not depend on the step, so `project_features` computes it once per image
    and every decoding step reuses it (`call(..., projected_features=...)`).

    Args:
        units: size of the attention MLP's hidden layer.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> attention = BahdanauAttention(units=32)
        >>> context, alpha = attention(features, hidden)   # [B, D], [B, L]

    Reference:
        Xu et al., "Show, Attend and Tell", ICML 2015; Bahdanau et al., ICLR 2015.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        if units <= 0:
            raise ValueError(f"units must be positive, got {units}")
        self.units = units

    def build(self, features_shape, hidden_shape=None):
        feature_dim = features_shape[-1]
        hidden_dim = hidden_shape[-1] if hidden_shape is not None else self.units
        self.feature_kernel = self.add_weight(name="feature_kernel", shape=(feature_dim, self.units))
        self.hidden_kernel = self.add_weight(name="hidden_kernel", shape=(hidden_dim, self.units))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score_vector = self.add_weight(name="score_vector", shape=(self.units,))

    def project_features(self, features: tf.Tensor) -> tf.Tensor:
        """W_a a_i + b for every region: [B, L, D] -> [B, L, units]."""
        return tf.einsum("bld,du->blu", features, self.feature_kernel) + self.bias

    def attention_weights(self, projected_features: tf.Tensor, hidden: tf.Tensor) -> tf.Tensor:
        """alpha [B, L] from projected features [B, L, units] and the previous hidden state [B, H]."""
        return self.weights_from_hidden_term(projected_features, tf.matmul(hidden, self.hidden_kernel))

    def weights_from_hidden_term(self, projected_features: tf.Tensor, hidden_term: tf.Tensor) -> tf.Tensor:
        """alpha [B, L] given W_h h_{t-1} [B, units] already computed (the decoder fuses that matmul
        with its LSTM recurrence, since both read h_{t-1})."""
        scores = tf.einsum("blu,u->bl", tf.tanh(projected_features + hidden_term[:, tf.newaxis, :]), self.score_vector)
        return tf.nn.softmax(scores, axis=-1)

    def call(self, features, hidden, projected_features=None):
        if projected_features is None:
            projected_features = self.project_features(features)
        alpha = self.attention_weights(projected_features, hidden)
        context = tf.einsum("bl,bld->bd", alpha, features)
        return context, alpha

    def get_config(self) -> dict:
        config = super().get_config()
        config["units"] = self.units
        return config
