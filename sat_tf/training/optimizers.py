"""Optimizer and learning-rate schedule from a `TrainConfig`."""

from __future__ import annotations

import keras

from sat_tf.training.config import TrainConfig


def make_learning_rate(config: TrainConfig, total_steps: int, scale: float = 1.0):
    """A float or a `keras.optimizers.schedules.LearningRateSchedule`.

    - constant: `learning_rate` throughout.
    - cosine: linear warm-up over `warmup_steps`, then cosine decay to 0 at `total_steps`.
    - exponential: halves the rate every quarter of the run.

    `scale` multiplies the rate at every step (the encoder's share, `encoder_learning_rate_scale`).
    """
    peak = config.learning_rate * scale
    if config.schedule == "constant":
        return peak
    if config.schedule == "cosine":
        decay_steps = max(1, total_steps - config.warmup_steps)
        if config.warmup_steps:
            return keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps, warmup_target=peak, warmup_steps=config.warmup_steps
            )
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps)
    return keras.optimizers.schedules.ExponentialDecay(peak, decay_steps=max(1, total_steps // 4), decay_rate=0.5)


def make_optimizer(config: TrainConfig, total_steps: int, scale: float = 1.0) -> keras.optimizers.Optimizer:
    """Adam or RMSProp with the configured schedule (its rate times `scale`). Clipping is done by
    the training step on the all-reduced gradient, not by the optimizer (Keras would clip per
    replica)."""
    learning_rate = make_learning_rate(config, total_steps, scale)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.RMSprop(learning_rate)
