"""The custom training loop: a tf.function GradientTape step under a tf.distribute strategy.

Loss scaling: each replica divides its summed losses by the *global* number of target tokens and
captions (`Captioner.compute_caption_loss` all-reduces the counts), so the sum of the replicas'
gradients is exactly the gradient of the global-batch loss. The step all-reduces gradients itself,
clips their global norm once, and divides by the replica count before `apply_gradients`, because
the Keras optimizer sums gradients across replicas again.

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

from sat_tf.data.pipeline import EncodedCaptions, count_batches, make_caption_dataset
from sat_tf.models.captioner import Captioner, dense_gradients
from sat_tf.training.config import TrainConfig
from sat_tf.training.optimizers import make_optimizer
from sat_tf.training.strategy import WORKER_FAILURE_ERRORS, WorkerFailureError, is_chief
from sat_tf.utils.atomic import atomic_path, write_json_atomic


class CheckpointError(RuntimeError):
    """No checkpoint in the directory could be restored."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf loss."""


@dataclasses.dataclass
class TrainingData:
    """Images (array or file paths) and the encoded captions that index into them."""

    images: np.ndarray | Sequence[str]
    captions: EncodedCaptions
    image_size: int | None = None


@dataclasses.dataclass
class TrainResult:
    model: Captioner
    steps: int
    history: list[dict]  # one entry per logged step
    tokens_per_second: float
    seconds: float


def build_train_step(model: Captioner, optimizer, strategy: tf.distribute.Strategy, config: TrainConfig):
    """Returns a tf.function running one distributed training step on a distributed batch."""

    def replica_step(batch):
        # Batches of cached features never reach the encoder: train the decoder only.
        variables = model.decoder.trainable_variables if "features" in batch else model.trainable_variables
        with tf.GradientTape() as tape:
            loss, logs = model.compute_caption_loss(batch, training=True)
        gradients = dense_gradients(tape.gradient(loss, variables))
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        if replicas > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        gradient_norm = tf.linalg.global_norm(gradients)
        if config.clip_norm is not None:
            gradients, _ = tf.clip_by_global_norm(gradients, config.clip_norm, use_norm=gradient_norm)
        if replicas > 1:
            gradients = [g / replicas for g in gradients]
        optimizer.apply_gradients(zip(gradients, variables))
        return {**logs, "gradient_norm": gradient_norm}

    def step(distributed_batch):
        per_replica = strategy.run(replica_step, args=(distributed_batch,))
        # Every replica holds the same global values; take the first.
        return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], per_replica)

    return tf.function(step, reduce_retracing=True, jit_compile=config.jit_compile)


def random_state_variables(model: keras.Model) -> list[tf.Variable]:
    """States of the model's Keras seed generators (dropout masks). tf.train.Checkpoint does not
    reach them through the model, and without them a resumed run would draw other dropout masks."""
    return [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]


def _step_of(optimizer) -> int:
    """The optimizer's step counter as an int (under a strategy it is a mirrored variable)."""
    return int(optimizer.iterations.numpy())


def _learning_rate_value(optimizer) -> float:
    rate = optimizer.learning_rate
    return float(rate.numpy() if hasattr(rate, "numpy") else rate)


def train(
    build_model: Callable[[], Captioner],
    data: TrainingData,
    config: TrainConfig,
    output_dir: str | os.PathLike,
    strategy: tf.distribute.Strategy | None = None,
    resume: bool = False,
    verbose: bool = True,
    validate: Callable[[Captioner], float] | None = None,
) -> TrainResult:
    """Trains a captioner with the custom loop and saves `output_dir/model.keras`.

    Model selection (the paper's: on validation BLEU): with `validate`, the model is scored after
    every epoch, the best one is written to `output_dir/best_model.keras` (its epoch and score to
    `best.json`), and `config.early_stopping_patience` epochs without improvement end training.

    Args:
        build_model: creates the (untrained) captioner; called inside `strategy.scope()`.
        data: training images and encoded captions.
        config: hyper-parameters.
        output_dir: checkpoints go to `output_dir/checkpoints`, TensorBoard logs to
            `output_dir/logs`, the final model to `output_dir/model.keras`.
        strategy: a tf.distribute strategy (default: no distribution).
        resume: continue from the latest checkpoint in `output_dir/checkpoints`, at the same step
            and data position.
        verbose: show a progress bar.
        validate: scores a model, higher is better (for example validation BLEU-4 of greedy
            captions, built from `sat_tf.inference` and `sat_tf.evaluation`).

    Raises:
        NonFiniteLossError: the loss became NaN or Inf (the last good checkpoint is kept).
    """
    strategy = strategy or tf.distribute.get_strategy()
    output_dir = Path(output_dir)
    chief = is_chief(strategy)
    keras.utils.set_random_seed(config.seed)
    steps_per_epoch = _steps_per_epoch(data.captions, config)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    with strategy.scope():
        model = build_model()
        _warn_on_batch_statistics_leak(model, config)
        optimizer = make_optimizer(config, total_steps)
        optimizer.build(model.trainable_variables)  # before the first tf.function step (Keras 3)
    # Host-side counters, created outside the scope so they stay plain (not mirrored) variables.
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batch_in_epoch")
    selection = _ModelSelection(config.early_stopping_patience)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch, batch_in_epoch=batch_in_epoch,
                                     random_states=random_state_variables(model), selection=selection)
    # Every worker takes part in saving (collective ops); only the chief's copy is kept. On resume
    # every worker restores the chief's checkpoints, so `output_dir` must be the same shared folder
    # for all workers (as TensorFlow's multi-worker checkpointing requires).
    shared_dir = output_dir / "checkpoints"
    checkpoint_dir = shared_dir if chief else Path(tempfile.mkdtemp(prefix="sat_tf_worker_"))
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=config.keep_checkpoints)
    source = manager if chief else tf.train.CheckpointManager(checkpoint, str(shared_dir), max_to_keep=None)
    if resume and source.checkpoints:
        restored = _restore_latest_good(checkpoint, source)
        if verbose:
            print(f"resumed from {restored} at step {_step_of(optimizer)}, "
                  f"epoch {int(epoch)}, batch {int(batch_in_epoch)}")

    train_step = build_train_step(model, optimizer, strategy, config)
    writer = tf.summary.create_file_writer(str(output_dir / "logs")) if chief else tf.summary.create_noop_writer()
    meter = _Throughput()
    history: list[dict] = []
    progress = _Progress(total_steps, _step_of(optimizer), config.log_every) if verbose else None
    try:
        history = _run_epochs(
            model=model, optimizer=optimizer, data=data, config=config, strategy=strategy, train_step=train_step,
            manager=manager, writer=writer, meter=meter, history=history, progress=progress, epoch=epoch,
            batch_in_epoch=batch_in_epoch, selection=selection, total_steps=total_steps,
            steps_per_epoch=steps_per_epoch, validate=validate, output_dir=output_dir, chief=chief, verbose=verbose)
    except WORKER_FAILURE_ERRORS as exc:
        raise WorkerFailureError(
            f"a worker failed or stopped answering near step {int(batch_in_epoch)} of epoch {int(epoch)} "
            f"({type(exc).__name__}); the last checkpoint is {manager.latest_checkpoint}. Restart every worker "
            f"with the same command and --resume.") from exc
    if chief:
        with atomic_path(output_dir / "model.keras") as tmp:
            model.save(tmp)
    else:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return TrainResult(model=model, steps=_step_of(optimizer), history=history,
                       tokens_per_second=meter.tokens_per_second, seconds=meter.wall_seconds)


def _run_epochs(*, model, optimizer, data, config, strategy, train_step, manager, writer, meter, history, progress,
                epoch, batch_in_epoch, selection, total_steps, steps_per_epoch, validate, output_dir, chief,
                verbose) -> list[dict]:
    """The epoch loop of `train` (data order from (seed, epoch), checkpoints, model selection)."""
    finished = _step_of(optimizer) >= total_steps
    while not finished and int(epoch) < config.epochs:
        dataset = make_caption_dataset(
            data.images, data.captions, config.batch_size, image_size=data.image_size, seed=config.seed,
            epoch=int(epoch), skip_batches=int(batch_in_epoch), bucket_by_length=config.bucket_by_length,
        )
        for batch in strategy.experimental_distribute_dataset(dataset.with_options(_sharding_options())):
            with meter.timing():
                logs = {k: float(v) for k, v in train_step(batch).items()}
            step = _step_of(optimizer)
            if not math.isfinite(logs["loss"]):
                raise NonFiniteLossError(f"loss became {logs['loss']} at step {step}; "
                                         f"the last good checkpoint is {manager.latest_checkpoint}")
            batch_in_epoch.assign_add(1)
            meter.add_tokens(logs["tokens"])
            if step % config.log_every == 0 or step == total_steps:
                history.append(_log_scalars(writer, step, logs, optimizer, meter.tokens_per_second))
            if progress is not None:
                progress.update(step, logs["loss"], meter.tokens_per_second)
            if step % config.checkpoint_every == 0:
                manager.save(checkpoint_number=step)
            finished = step >= total_steps
            if finished:
                break
        else:
            finished = False  # the epoch's data ran out: the epoch is complete
        if finished and int(batch_in_epoch) < steps_per_epoch:
            break  # stopped inside an epoch (max_steps)
        epoch.assign_add(1)
        batch_in_epoch.assign(0)
        if validate is not None:
            selection_logs = _select_model(validate, model, selection, int(epoch), _step_of(optimizer),
                                           output_dir, chief, writer, verbose)
            history.append(selection_logs)
            manager.save(checkpoint_number=_step_of(optimizer))
            if selection.should_stop():
                if verbose:
                    print(f"early stopping: no better validation score for {config.early_stopping_patience} "
                          f"epoch(s)", flush=True)
                break
    manager.save(checkpoint_number=_step_of(optimizer))
    writer.flush()
    return history


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
            print(f"warning: checkpoint {path} is unreadable ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:200]}); trying the previous one", file=sys.stderr, flush=True)
    raise CheckpointError(f"no readable checkpoint in {manager.directory}; remove it to start over")


def _steps_per_epoch(captions: EncodedCaptions, config: TrainConfig) -> int:
    steps = count_batches(captions, config.batch_size, seed=config.seed, bucket_by_length=config.bucket_by_length)
    if steps == 0:
        raise ValueError(f"{len(captions)} captions make no full batch of {config.batch_size}")
    return steps


def _select_model(validate, model, selection, epoch: int, step: int, output_dir: Path, chief: bool, writer,
                  verbose: bool) -> dict:
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


def _warn_on_batch_statistics_leak(model: Captioner, config: TrainConfig) -> None:
    if config.bucket_by_length and model.encoder.uses_batch_statistics:
        warnings.warn(
            "bucket_by_length=True with a BatchNorm encoder trained from scratch: batch statistics "
            "reveal each bucket's caption length, a shortcut that fails at test time; use "
            "bucket_by_length=False or small_cnn_normalization='group'",
            stacklevel=3,
        )


_SCALARS = ("loss", "cross_entropy", "penalty", "gradient_norm", "learning_rate", "tokens_per_second")


def _log_scalars(writer, step: int, logs: dict, optimizer, tokens_per_second: float) -> dict:
    """Writes the step's TensorBoard scalars; returns them as a history entry."""
    entry = {**logs, "step": step, "learning_rate": _learning_rate_value(optimizer),
             "tokens_per_second": tokens_per_second}
    with writer.as_default(step=step):
        for name in _SCALARS:
            tf.summary.scalar(name, entry[name])
    return entry


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
