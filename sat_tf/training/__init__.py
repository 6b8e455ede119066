"""Training layer: the captioning tasks (cross-entropy and self-critical: loss and step), the custom
distributed loop, strategies, optimizers (imports data, models, inference, evaluation)."""

from sat_tf.utils.quiet import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module below imports TensorFlow

from sat_tf.training.config import TrainConfig
from sat_tf.training.self_critical import CiderReward, SelfCriticalTask
from sat_tf.training.strategy import is_chief, make_strategy
from sat_tf.training.task import CaptioningTask
from sat_tf.training.trainer import NonFiniteLossError, Trainer, TrainingData, TrainResult, build_train_step, train

__all__ = [
    "CaptioningTask",
    "CiderReward",
    "SelfCriticalTask",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingData",
    "build_train_step",
    "is_chief",
    "make_strategy",
    "train",
]
