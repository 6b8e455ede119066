"""Training layer: the custom distributed loop, strategies, optimizers (imports data and models)."""

from sat_tf.training.config import TrainConfig
from sat_tf.training.strategy import is_chief, make_strategy
from sat_tf.training.trainer import NonFiniteLossError, TrainingData, TrainResult, build_train_step, train

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "build_train_step",
    "is_chief",
    "make_strategy",
    "train",
]
