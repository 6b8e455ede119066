"""The calibrated confidence in graph ops, for the SavedModel: the same signals and logistic model as
`sat_tf_edge.calibration` (numpy, used by the library and the edge runtime), so a served caption
carries the same number (within float32 rounding; tested against the numpy version).
"""

from __future__ import annotations

import math

import tensorflow as tf

from sat_tf_edge.calibration import ConfidenceCalibration


def _emitted(lengths: tf.Tensor, steps) -> tf.Tensor:
    return tf.sequence_mask(lengths, steps)


def _beam_agreement(tokens: tf.Tensor, lengths: tf.Tensor, end_id: int) -> tf.Tensor:
    """As `sat_tf_edge.calibration.beam_agreement`: share of the best caption's words each other
    candidate contains, averaged over the others ([B, k, T] tokens, k >= 2)."""
    steps = tf.shape(tokens)[2]
    best = tokens[:, 0]
    last = tf.gather(best, tf.maximum(lengths[:, 0] - 1, 0), batch_dims=1)
    words = _emitted(lengths[:, 0] - tf.cast(tf.equal(last, end_id), tf.int32), steps)  # [B, T]
    others = _emitted(lengths[:, 1:], steps)  # [B, k-1, T]
    same = tf.equal(best[:, tf.newaxis, :, tf.newaxis], tokens[:, 1:, tf.newaxis, :])  # [B, k-1, T, T]
    found = tf.reduce_any(same & others[:, :, tf.newaxis, :], axis=-1) & words[:, tf.newaxis]
    count = tf.maximum(tf.reduce_sum(tf.cast(words, tf.float32), -1), 1.0)
    return tf.reduce_mean(tf.reduce_sum(tf.cast(found, tf.float32), -1) / count[:, tf.newaxis], axis=-1)


def graph_signals(calibration: ConfidenceCalibration, outputs: dict, end_id: int) -> dict[str, tf.Tensor | None]:
    """The signals `calibration` reads, from a sampler's outputs (`Sampler.run`); None for a signal
    the decoding cannot give (the beam signals of greedy decoding: read as their mean)."""
    token_log_probs = outputs["token_log_probs"][:, 0]
    lengths = tf.maximum(outputs["lengths"], 1)
    length = tf.cast(lengths[:, 0], tf.float32)
    steps = tf.shape(token_log_probs)[1]
    emitted = _emitted(lengths[:, 0], steps)
    k = outputs["tokens"].shape[1]
    signals: dict[str, tf.Tensor | None] = {}
    for name in calibration.signals:
        if name == "mean_log_prob":
            signals[name] = tf.reduce_sum(token_log_probs, -1) / length
        elif name == "min_log_prob":
            signals[name] = tf.reduce_min(tf.where(emitted, token_log_probs, math.inf), -1)
        elif name == "length":
            signals[name] = length
        elif name == "beam_margin":
            per_token = outputs["log_probs"] / tf.cast(lengths, tf.float32)
            signals[name] = per_token[:, 0] - per_token[:, 1] if k > 1 else None
        elif name == "beam_agreement":
            signals[name] = _beam_agreement(outputs["tokens"], lengths, end_id) if k > 1 else None
        elif name == "attention_entropy":
            alphas = outputs["alphas"][:, 0]
            regions = tf.cast(tf.shape(alphas)[-1], tf.float32)
            entropy = -tf.reduce_sum(alphas * tf.math.log(tf.maximum(alphas, 1e-12)), -1) / tf.math.log(regions)
            signals[name] = tf.reduce_sum(entropy * tf.cast(emitted, tf.float32), -1) / length
    novelty = calibration.novelty
    if novelty is not None and {"photo_distance", "photo_residual"} & set(calibration.signals):
        centered = outputs["photo_states"] - tf.constant(novelty.center, tf.float32)
        directions = tf.constant(novelty.directions, tf.float32)
        coordinates = tf.matmul(centered, directions, transpose_b=True)
        residual = centered - tf.matmul(coordinates, directions)
        signals["photo_distance"] = tf.reduce_mean(tf.square(coordinates / novelty.scales.astype("float32")), -1)
        signals["photo_residual"] = tf.reduce_mean(tf.square(residual), -1)
    return signals


def graph_confidence(calibration: ConfidenceCalibration, outputs: dict, end_id: int) -> tf.Tensor:
    """float32 [B]: `ConfidenceCalibration.confidence` of each best caption, in graph ops."""
    signals = graph_signals(calibration, outputs, end_id)
    logit = tf.fill(tf.shape(outputs["lengths"])[:1], tf.constant(calibration.bias, tf.float32))
    for name, mean, scale, weight in zip(
        calibration.signals, calibration.means, calibration.scales, calibration.weights
    ):
        value = signals[name]
        if value is not None:  # an absent signal is read as its mean: no term
            logit += float(weight) * (value - float(mean)) / float(scale)
    return tf.sigmoid(logit)
