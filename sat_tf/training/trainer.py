"""The custom training loop: a tf.function GradientTape step under a tf.distribute strategy.

The loss and the step belong to `CaptioningTask` (see its module for the global-batch loss
scaling); the `Trainer` here owns everything around it: the data order, checkpoints, logs,
validation and model selection.

Resume: the checkpoint stores the model, the optimizer (with its step counter), the epoch and the
number of batches already consumed in that epoch. The data order is a function of (seed, epoch),
so a resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from sat_tf.data.feature_cache import FeatureCache
from sat_tf.data.photo_views import ViewedFeatures, ViewedPhotos
from sat_tf.data.pipeline import EncodedCaptions, count_batches, make_caption_dataset
from sat_tf.errors import ConfigError, SatTfError
from sat_tf.models.captioner import Captioner
from sat_tf.training.config import TrainConfig
from sat_tf.training.optimizers import make_optimizer
from sat_tf.training.precision import dtype_policy, float32_layers, resolve_precision
from sat_tf.training.strategy import WORKER_FAILURE_ERRORS, WorkerFailureError, is_chief
from sat_tf.training.task import CaptioningTask
from sat_tf.utils.atomic import atomic_path, write_json_atomic


class CheckpointError(SatTfError, RuntimeError):
    """No checkpoint in the directory could be restored."""


class NonFiniteLossError(SatTfError, RuntimeError):
    """Training produced a NaN or Inf loss."""


@dataclasses.dataclass
class TrainingData:
    """What the model trains on: a source of images or cached features, and the encoded captions
    that index into it. The source's type decides, once, whether batches hold "images" or
    "features" (see `make_caption_dataset`)."""

    images: np.ndarray | Sequence[str] | FeatureCache | ViewedPhotos | ViewedFeatures
    captions: EncodedCaptions
    image_size: int | None = None

    @property
    def reads_features(self) -> bool:
        return isinstance(self.images, (FeatureCache, ViewedFeatures))


@dataclasses.dataclass
class TrainResult:
    model: Captioner
    steps: int
    history: list[dict]  # one entry per logged step
    tokens_per_second: float
    seconds: float


def build_train_step(
    model: Captioner,
    optimizer,
    strategy: tf.distribute.Strategy,
    config: TrainConfig,
    task: CaptioningTask | None = None,
    encoder_optimizer=None,
):
    """Returns a tf.function running one distributed training step (`task.replica_step` on every
    replica; by default the cross-entropy `CaptioningTask`) on a distributed batch."""
    task = task or CaptioningTask(model, clip_norm=config.clip_norm)

    def step(distributed_batch):
        per_replica = strategy.run(
            lambda batch: task.replica_step(batch, optimizer, encoder_optimizer), args=(distributed_batch,)
        )
        # Every replica holds the same global values; take the first.
        return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], per_replica)

    return tf.function(step, reduce_retracing=True, jit_compile=config.jit_compile)


def random_state_variables(model: keras.Model) -> list[tf.Variable]:
    """States of the model's Keras seed generators (dropout masks). tf.train.Checkpoint does not
    reach them through the model, and without them a resumed run would draw other dropout masks."""
    return [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]


def _learning_rate_value(optimizer) -> float:
    rate = optimizer.learning_rate
    return float(rate.numpy() if hasattr(rate, "numpy") else rate)


class Trainer:
    """Runs the custom loop for one captioner; its state is what a checkpoint holds.

    State: `model`, `optimizer` (its step counter is the global step), `epoch` and
    `batch_in_epoch` (the data position), `selection` (best validation score so far), the model's
    random-generator states, and the checkpoint `manager`. Everything is created in the
    constructor, inside `strategy.scope()` where it must be; `fit` runs the epochs.

    Args:
        build_model: creates the (untrained) captioner; called inside `strategy.scope()`.
        data: training images or cached features, and encoded captions.
        config: hyper-parameters.
        output_dir: checkpoints go to `output_dir/checkpoints`, TensorBoard logs to
            `output_dir/logs`, the final model to `output_dir/model.keras`.
        strategy: a tf.distribute strategy (default: no distribution).
        validate: scores a model, higher is better (for example validation BLEU-4 of greedy
            captions); with it, the best epoch is kept as `output_dir/best_model.keras`.
        verbose: show a progress bar.
        build_task: the task (loss and step) for the model; default the cross-entropy
            `CaptioningTask` with `config.clip_norm` (`SelfCriticalTask` for self-critical training).
        figures: model -> {name: RGB uint8 image}, written to TensorBoard (`images/<name>`) after
            every validation, for example the attention figures of a few fixed validation
            images (`sat_tf.workflows.train.attention_figures`).
    """

    def __init__(
        self,
        build_model: Callable[[], Captioner],
        data: TrainingData,
        config: TrainConfig,
        output_dir: str | os.PathLike,
        strategy: tf.distribute.Strategy | None = None,
        validate: Callable[[Captioner], float] | None = None,
        verbose: bool = True,
        build_task: Callable[[Captioner], CaptioningTask] | None = None,
        figures: Callable[[Captioner], dict[str, np.ndarray]] | None = None,
    ):
        self.data, self.config, self.validate, self.verbose = data, config, validate, verbose
        self.figures = figures
        self.strategy = strategy or tf.distribute.get_strategy()
        self.output_dir = Path(output_dir)
        self.chief = is_chief(self.strategy)
        keras.utils.set_random_seed(config.seed)
        self.precision = resolve_precision(config.precision)
        with self.strategy.scope(), dtype_policy(self.precision):
            self.model = build_model()
            self.task = (build_task or (lambda m: CaptioningTask(m, clip_norm=config.clip_norm)))(self.model)
            if config.bucket_by_length is None:  # auto: not with batch statistics that would leak lengths
                config = dataclasses.replace(
                    config, bucket_by_length=data.reads_features or not self.model.encoder.uses_batch_statistics
                )
                self.config = config
            _warn_on_batch_statistics_leak(self.model, config, data)
            self.steps_per_epoch = _steps_per_epoch(data.captions, config)
            self.total_steps = self.steps_per_epoch * config.epochs
            if config.max_steps is not None:
                self.total_steps = min(self.total_steps, config.max_steps)
            self.optimizer = make_optimizer(config, self.total_steps)
            self.encoder_optimizer = None
            encoder_variables = self.model.encoder.trainable_variables
            if self.model.encoder.is_pretrained_backbone and encoder_variables:
                # Pretrained blocks being fine-tuned learn more slowly than the decoder.
                self.encoder_optimizer = make_optimizer(config, self.total_steps, config.encoder_learning_rate_scale)
                self.encoder_optimizer.build(encoder_variables)
            if self.precision == "mixed_float16":  # float16 gradients underflow without loss scaling
                if self.encoder_optimizer is not None:
                    raise ConfigError(
                        "mixed_float16 with fine-tuned encoder blocks is not supported (one loss "
                        "scale for two optimizers); use mixed_bfloat16"
                    )
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            encoder_ids = {id(v) for v in encoder_variables} if self.encoder_optimizer else set()
            # Built before the first tf.function step (Keras 3).
            self.optimizer.build([v for v in self.model.trainable_variables if id(v) not in encoder_ids])
        # Host-side counters, created outside the scope so they stay plain (not mirrored) variables.
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batch_in_epoch")
        self.selection = _ModelSelection(config.early_stopping_patience)
        extra_state = {"task_draws": self.task.draws} if hasattr(self.task, "draws") else {}
        if self.encoder_optimizer is not None:
            extra_state["encoder_optimizer"] = self.encoder_optimizer
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            random_states=random_state_variables(self.model),
            selection=self.selection,
            **extra_state,
        )
        # Every worker takes part in saving (collective ops); only the chief's copy is kept. On resume
        # every worker restores the chief's checkpoints, so `output_dir` must be the same shared folder
        # for all workers (as TensorFlow's multi-worker checkpointing requires).
        self.shared_checkpoint_dir = self.output_dir / "checkpoints"
        self.checkpoint_dir = (
            self.shared_checkpoint_dir if self.chief else Path(tempfile.mkdtemp(prefix="sat_tf_worker_"))
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.checkpoint_dir), max_to_keep=config.keep_checkpoints
        )
        self.writer = (
            tf.summary.create_file_writer(str(self.output_dir / "logs"))
            if self.chief
            else tf.summary.create_noop_writer()
        )
        self.meter = _Throughput()
        self.history: list[dict] = []

    @property
    def step(self) -> int:
        """The global step (the optimizer's counter; under a strategy it is a mirrored variable)."""
        return int(self.optimizer.iterations.numpy())

    def restore(self) -> str | None:
        """Restores the latest readable checkpoint of `output_dir`, if any; returns its path."""
        source = (
            self.manager
            if self.chief
            else tf.train.CheckpointManager(self.checkpoint, str(self.shared_checkpoint_dir), max_to_keep=None)
        )
        if not source.checkpoints:
            return None
        restored = _restore_latest_good(self.checkpoint, source)
        if self.verbose:
            print(
                f"resumed from {restored} at step {self.step}, epoch {int(self.epoch)}, "
                f"batch {int(self.batch_in_epoch)}"
            )
        return restored

    def fit(self, resume: bool = False) -> TrainResult:
        """Trains to the end of the schedule (or early stopping) and saves `output_dir/model.keras`.

        Raises:
            NonFiniteLossError: the loss became NaN or Inf (the last good checkpoint is kept).
            WorkerFailureError: a worker of a multi-worker job failed.
        """
        if resume:
            self.restore()
        train_step = build_train_step(
            self.model, self.optimizer, self.strategy, self.config, self.task, self.encoder_optimizer
        )
        progress = _Progress(self.total_steps, self.step, self.config.log_every) if self.verbose else None
        try:
            self._run_epochs(train_step, progress)
        except WORKER_FAILURE_ERRORS as exc:
            raise WorkerFailureError(
                f"a worker failed or stopped answering near step {int(self.batch_in_epoch)} of epoch "
                f"{int(self.epoch)} ({type(exc).__name__}); the last checkpoint is {self.manager.latest_checkpoint}. "
                f"Restart every worker with the same command and --resume."
            ) from exc
        if self.chief:
            with atomic_path(self.output_dir / "model.keras") as tmp, float32_layers(self.model):
                self.model.save(tmp)
        else:
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return TrainResult(
            model=self.model,
            steps=self.step,
            history=self.history,
            tokens_per_second=self.meter.tokens_per_second,
            seconds=self.meter.wall_seconds,
        )

    def _run_epochs(self, train_step, progress) -> None:
        """The epoch loop: data order from (seed, epoch), checkpoints, model selection."""
        config = self.config
        finished = self.step >= self.total_steps
        while not finished and int(self.epoch) < config.epochs:
            finished = self._run_epoch(train_step, progress)
            if finished and int(self.batch_in_epoch) < self.steps_per_epoch:
                break  # stopped inside an epoch (max_steps)
            self.epoch.assign_add(1)
            self.batch_in_epoch.assign(0)
            if self.validate is not None and self._validate_and_select():
                break
        self.manager.save(checkpoint_number=self.step)
        self.writer.flush()

    def _run_epoch(self, train_step, progress) -> bool:
        """Runs the rest of the current epoch; returns whether the schedule's last step was reached."""
        config = self.config
        dataset = make_caption_dataset(
            self.data.images,
            self.data.captions,
            config.batch_size,
            image_size=self.data.image_size,
            seed=config.seed,
            epoch=int(self.epoch),
            skip_batches=int(self.batch_in_epoch),
            bucket_by_length=bool(config.bucket_by_length),  # decided (not None) in __init__
        )
        for batch in self.strategy.experimental_distribute_dataset(dataset.with_options(_sharding_options())):
            with self.meter.timing():
                logs = {k: float(v) for k, v in train_step(batch).items()}
            step = self.step
            if not math.isfinite(logs["loss"]):
                raise NonFiniteLossError(
                    f"loss became {logs['loss']} at step {step}; "
                    f"the last good checkpoint is {self.manager.latest_checkpoint}"
                )
            self.batch_in_epoch.assign_add(1)
            self.meter.add_tokens(logs["tokens"])
            if step % config.log_every == 0 or step == self.total_steps:
                self.history.append(_log_scalars(self.writer, step, logs, self.optimizer, self.meter.tokens_per_second))
            if progress is not None:
                progress.update(step, logs["loss"], self.meter.tokens_per_second)
            if step % config.checkpoint_every == 0:
                self.manager.save(checkpoint_number=step)
            if step >= self.total_steps:
                return True
        return False  # the epoch's data ran out: the epoch is complete

    def _validate_and_select(self) -> bool:
        """Scores the model after an epoch, keeps the best one; returns whether to stop early."""
        # Validation decodes in float32, as the saved model will (mixed-precision training included).
        with float32_layers(self.model):
            self.history.append(
                _select_model(
                    self.validate,
                    self.model,
                    self.selection,
                    int(self.epoch),
                    self.step,
                    self.output_dir,
                    self.chief,
                    self.writer,
                    self.verbose,
                )
            )
            if self.figures is not None and self.chief:
                with self.writer.as_default(step=self.step):
                    for name, image in self.figures(self.model).items():
                        tf.summary.image(f"images/{name}", np.asarray(image, np.uint8)[np.newaxis])
                self.writer.flush()
        self.manager.save(checkpoint_number=self.step)
        if self.selection.should_stop():
            if self.verbose:
                print(
                    f"early stopping: no better validation score for {self.config.early_stopping_patience} epoch(s)",
                    flush=True,
                )
            return True
        return False


def train(
    build_model: Callable[[], Captioner],
    data: TrainingData,
    config: TrainConfig,
    output_dir: str | os.PathLike,
    strategy: tf.distribute.Strategy | None = None,
    resume: bool = False,
    verbose: bool = True,
    validate: Callable[[Captioner], float] | None = None,
    build_task: Callable[[Captioner], CaptioningTask] | None = None,
    figures: Callable[[Captioner], dict[str, np.ndarray]] | None = None,
) -> TrainResult:
    """Trains a captioner with the custom loop: `Trainer(...).fit(resume)`. See `Trainer`.

    Example:
        >>> result = train(lambda: build_captioner(ModelConfig(), tokenizer), data, TrainConfig(),
        ...                "runs/demo", validate=bleu4_validator(images, ids, references))
    """
    return Trainer(build_model, data, config, output_dir, strategy, validate, verbose, build_task, figures).fit(resume)


def _sharding_options() -> tf.data.Options:
    """Multi-worker data sharding, explicitly: every worker builds the same (seed, epoch)-ordered
    pipeline of global batches, and `experimental_distribute_dataset` splits each global batch
    into per-worker shares (DATA policy). So global batch k holds the same captions with 1 or N
    workers, and every caption is seen once per epoch across the workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _restore_latest_good(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager) -> str:
    """Restores the newest checkpoint that reads back; a truncated or corrupt one (a crash while
    it was written, a damaged disk) is reported and the previous one is used."""
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as exc:
            print(
                f"warning: checkpoint {path} is unreadable ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); trying the previous one",
                file=sys.stderr,
                flush=True,
            )
    raise CheckpointError(f"no readable checkpoint in {manager.directory}; remove it to start over")


def _steps_per_epoch(captions: EncodedCaptions, config: TrainConfig) -> int:
    steps = count_batches(captions, config.batch_size, seed=config.seed, bucket_by_length=bool(config.bucket_by_length))
    if steps == 0:
        raise ValueError(f"{len(captions)} captions make no full batch of {config.batch_size}")
    return steps


def _select_model(
    validate, model, selection, epoch: int, step: int, output_dir: Path, chief: bool, writer, verbose: bool
) -> dict:
    """Scores the model after an epoch; writes best_model.keras and best.json when it improved."""
    score = float(validate(model))
    improved = selection.update(score)
    with writer.as_default(step=step):
        tf.summary.scalar("validation_score", score)
    if verbose:
        print(f"epoch {epoch}: validation score {score:.2f}{' (best so far)' if improved else ''}", flush=True)
    if improved and chief:
        with atomic_path(output_dir / "best_model.keras") as tmp:
            model.save(tmp)
        write_json_atomic(output_dir / "best.json", {"epoch": epoch, "score": score, "step": step})
    return {"step": step, "epoch": epoch, "validation_score": score}


def _warn_on_batch_statistics_leak(model: Captioner, config: TrainConfig, data: TrainingData) -> None:
    if config.bucket_by_length and model.encoder.uses_batch_statistics and not data.reads_features:
        warnings.warn(
            "bucket_by_length=True with a BatchNorm encoder trained from scratch: batch statistics "
            "reveal each bucket's caption length, a shortcut that fails at test time; use "
            "bucket_by_length=False or small_cnn_normalization='group'",
            stacklevel=3,
        )


def _log_scalars(writer, step: int, logs: dict, optimizer, tokens_per_second: float) -> dict:
    """Writes the step's TensorBoard scalars (every value the task logs, the learning rate and
    the throughput); returns them as a history entry."""
    entry = {**logs, "learning_rate": _learning_rate_value(optimizer), "tokens_per_second": tokens_per_second}
    with writer.as_default(step=step):
        for name, value in entry.items():
            if name != "tokens":
                tf.summary.scalar(name, value)
    return {**entry, "step": step}


class _ModelSelection(tf.Module):
    """Best validation score so far and epochs since it improved; checkpointed, so a resumed run
    keeps selecting against the same best."""

    def __init__(self, patience: int | None):
        super().__init__(name="model_selection")
        self.patience = patience
        self.best = tf.Variable(-math.inf, dtype=tf.float64, trainable=False, name="best_score")
        self.stale_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="stale_epochs")

    def update(self, score: float) -> bool:
        if score > float(self.best.numpy()):
            self.best.assign(score)
            self.stale_epochs.assign(0)
            return True
        self.stale_epochs.assign_add(1)
        return False

    def should_stop(self) -> bool:
        return self.patience is not None and int(self.stale_epochs.numpy()) >= self.patience


class _Throughput:
    """Target tokens per second of time spent inside training steps."""

    def __init__(self):
        self.tokens = 0.0
        self.busy_seconds = 0.0
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def timing(self):
        tick = time.perf_counter()
        yield
        self.busy_seconds += time.perf_counter() - tick

    def add_tokens(self, count: float) -> None:
        self.tokens += count

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.busy_seconds, 1e-9)

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started


class _Progress:
    """A Keras progress bar on a terminal; one line every `log_every` steps in logs (no terminal)."""

    def __init__(self, total_steps: int, start_step: int, log_every: int):
        self.interactive = sys.stdout.isatty()
        self.total_steps = total_steps
        self.log_every = log_every
        if self.interactive:
            self.bar = keras.utils.Progbar(total_steps, stateful_metrics=["loss", "tok/s"])
            self.bar.update(start_step)

    def update(self, step: int, loss: float, tokens_per_second: float) -> None:
        if self.interactive:
            self.bar.update(step, [("loss", loss), ("tok/s", tokens_per_second)])
        elif step % self.log_every == 0 or step == self.total_steps:
            print(f"step {step}/{self.total_steps}  loss {loss:.4f}  {tokens_per_second:,.0f} tok/s", flush=True)
