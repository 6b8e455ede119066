"""Training hyper-parameters."""

from __future__ import annotations

import dataclasses

from sat_tf.errors import ConfigError

INIT_VOCABULARIES = ("model", "data")
OPTIMIZERS = ("adam", "rmsprop")
SCHEDULES = ("constant", "cosine", "exponential")
STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass
class TrainConfig:
    """Settings of the custom training loop (`sat_tf.training.train`).

    Args:
        batch_size: global batch size (split across replicas).
        epochs: passes over the training captions.
        max_steps: stop after this many optimizer steps in total (None: run all epochs).
        optimizer: "adam" or "rmsprop" (the paper used both).
        learning_rate: peak learning rate.
        schedule: "constant", "cosine" (decay to 0 over the run) or "exponential" (halves every
            quarter of the run); see `make_learning_rate`.
        warmup_steps: linear warm-up steps (cosine schedule).
        encoder_learning_rate_scale: the encoder's trainable part (fine-tuned top blocks) learns
            at this times the decoder's rate, through an optimizer of its own.
        clip_norm: clip the global-batch gradient to this global norm (None: no clipping).
        seed: seed of the data order and of weight initialisation.
        checkpoint_every: save a checkpoint every this many steps (and at every epoch end).
        keep_checkpoints: checkpoints kept on disk.
        log_every: steps between TensorBoard summaries and progress-bar updates.
        bucket_by_length: batch captions of similar length together (less padding). Not with an
            encoder that normalises with batch statistics; see `build_small_cnn`. None (the
            default): on, except for such an encoder reading images (decided by the `Trainer`).
        jit_compile: compile the training step with XLA.
        early_stopping_patience: with a `validate` function, stop after this many epochs without
            a better validation score (None: never stop early).
        strategy: "default" (one device), "mirrored" (all local GPUs) or "multi_worker" (TF_CONFIG).
        deterministic: deterministic TensorFlow ops: a resumed or repeated run gives the same weights.
        precision: "float32", "mixed_bfloat16", "mixed_float16" (with dynamic loss scaling) or
            "auto" (mixed_bfloat16 where the CPU or GPU computes bfloat16 natively, else float32);
            weights and saved models stay float32 (see `sat_tf.training.precision`).
        init_from: start cross-entropy training from this trained model (a `.keras` file, run
            folder or preset) instead of random weights: its vocabulary and layer sizes must be
            the run's; its attention mode may differ (hard attention from a soft model).
        init_vocabulary: with init_from, "model" (keep its vocabulary) or "data" (build the
            vocabulary from the run's data, as without init_from; the words the model knows
            start from its rows, new words from scratch).
    """

    batch_size: int = 64
    epochs: int = 10
    max_steps: int | None = None
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    encoder_learning_rate_scale: float = 0.1
    clip_norm: float | None = 5.0
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    bucket_by_length: bool | None = None
    jit_compile: bool = False
    early_stopping_patience: int | None = None
    strategy: str = "default"
    deterministic: bool = False
    precision: str = "float32"
    init_from: str | None = None
    init_vocabulary: str = "model"

    def __post_init__(self):
        if self.init_vocabulary not in INIT_VOCABULARIES:
            raise ConfigError(f"init_vocabulary must be one of {INIT_VOCABULARIES}, got '{self.init_vocabulary}'")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got '{self.optimizer}'")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got '{self.schedule}'")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got '{self.precision}'")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got '{self.strategy}'")
        for name in ("batch_size", "epochs", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.encoder_learning_rate_scale <= 0:
            raise ConfigError(f"encoder_learning_rate_scale must be positive, got {self.encoder_learning_rate_scale}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm must be positive or None, got {self.clip_norm}")
