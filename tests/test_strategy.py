import pytest
import tensorflow as tf

from sat_tf.training.config import TrainConfig
from sat_tf.training.strategy import is_chief, make_strategy


def test_named_strategies():
    assert make_strategy("default") is tf.distribute.get_strategy()
    mirrored = make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == 2  # the two logical CPUs of conftest.py
    assert is_chief(mirrored) and is_chief(tf.distribute.get_strategy())
    with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
        make_strategy("tpu")


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        make_strategy("multi_worker")


def test_chief_is_worker_zero_without_a_chief_task():
    class Resolver:
        def __init__(self, task_type, task_id, cluster):
            self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

        def cluster_spec(self):
            return tf.train.ClusterSpec(self._cluster)

    class FakeStrategy:
        def __init__(self, resolver):
            self.cluster_resolver = resolver

    workers = {"worker": ["localhost:1", "localhost:2"]}
    assert is_chief(FakeStrategy(Resolver("worker", 0, workers)))
    assert not is_chief(FakeStrategy(Resolver("worker", 1, workers)))
    with_chief = {"chief": ["localhost:0"], **workers}
    assert is_chief(FakeStrategy(Resolver("chief", 0, with_chief)))
    assert not is_chief(FakeStrategy(Resolver("worker", 0, with_chief)))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("optimizer", "sgd", "optimizer must be one of"),
        ("schedule", "linear", "schedule must be one of"),
        ("batch_size", 0, "batch_size must be positive"),
        ("clip_norm", -1.0, "clip_norm must be positive"),
    ],
)
def test_train_config_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})
