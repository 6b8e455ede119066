"""Choosing a tf.distribute strategy by name."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from sat_tf.errors import SatTfError
from sat_tf.training.config import STRATEGIES

# A collective (gradient all-reduce) that has not completed after this long means a peer is gone.
COLLECTIVE_TIMEOUT_SECONDS = float(os.environ.get("SAT_TF_COLLECTIVE_TIMEOUT", "300"))
# The errors a collective raises when a peer died or stopped answering.
WORKER_FAILURE_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)


class WorkerFailureError(SatTfError, RuntimeError):
    """A worker of a multi-worker job failed; restart every worker with --resume."""


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """Returns the strategy called `name`.

    - "default": no distribution (one device).
    - "mirrored": `MirroredStrategy` over all local GPUs (or CPU devices when there is no GPU).
    - "multi_worker": `MultiWorkerMirroredStrategy`, cluster taken from the TF_CONFIG variable.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' needs the TF_CONFIG environment variable (see README)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as exc:
            raise ValueError(f"TF_CONFIG is not valid JSON: {exc}") from None
        # The timeout turns a dead peer into an error instead of a hang (TF's own health checks
        # also notice a lost peer, within a minute or so).
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"unknown strategy '{name}'; choose one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, summaries and models.

    As TensorFlow documents it: the "chief" task, or worker 0 when the cluster has no chief.
    Single-process strategies always write.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if not cluster or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster
