"""Long runs that get killed: SIGKILL at a random step then --resume, corrupt checkpoints, and
multi-worker training (equivalence with one process, a dead worker, restart)."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from sat_tf.training import TrainConfig, TrainingData, train

TRAIN = [
    sys.executable,
    "-m",
    "sat_tf.cli",
    "train",
    "--num-images",
    "48",
    "--image-size",
    "32",
    "--cnn-filters",
    "4,8",
    "--embedding-dim",
    "8",
    "--hidden-dim",
    "16",
    "--attention-dim",
    "8",
    "--batch-size",
    "8",
    "--epochs",
    "4",
    "--checkpoint-every",
    "3",
    "--deterministic",
    "--seed",
    "3",
    "--learning-rate",
    "0.01",
]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _weights(run_dir: Path) -> list[np.ndarray]:
    return [w.numpy() for w in keras.saving.load_model(run_dir / "model.keras").weights]


def test_sigkill_at_a_random_step_then_resume_gives_the_uninterrupted_weights(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run([*TRAIN, "--output-dir", str(reference)], check=True, env=ENV, timeout=600, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*TRAIN, "--output-dir", str(killed)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = killed / "checkpoints"
    deadline = time.time() + 300
    while not list(checkpoints.glob("ckpt-*.index")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.5))  # somewhere after the first checkpoint
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model.keras").exists()
    resumed = subprocess.run(
        [*TRAIN, "--output-dir", str(killed), "--resume"], env=ENV, timeout=600, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    for a, b in zip(_weights(killed), _weights(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_corrupt_latest_checkpoint_is_reported_and_the_previous_one_used(tiny_data, tmp_path, capsys):
    from conftest import make_tiny_model

    data, tokenizer, captions = tiny_data
    config = TrainConfig(
        batch_size=8, epochs=1, max_steps=4, checkpoint_every=2, seed=0, learning_rate=1e-2, bucket_by_length=False
    )
    train(lambda: make_tiny_model(tokenizer), TrainingData(data.images, captions), config, tmp_path, verbose=False)
    newest = tmp_path / "checkpoints" / "ckpt-4.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    config = TrainConfig(
        batch_size=8, epochs=1, max_steps=5, checkpoint_every=100, seed=0, learning_rate=1e-2, bucket_by_length=False
    )
    result = train(
        lambda: make_tiny_model(tokenizer),
        TrainingData(data.images, captions),
        config,
        tmp_path,
        resume=True,
        verbose=True,
    )
    output = capsys.readouterr()
    assert "ckpt-4" in output.err and "unreadable" in output.err
    assert "resumed from" in output.out and "ckpt-2" in output.out
    assert result.steps == 5


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _worker_env(ports: list[int], index: int, **extra) -> dict:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}), **extra}


MULTI = [*TRAIN[: TRAIN.index("--epochs")], "--epochs", "2", "--cnn-normalization", "none", "--dropout", "0"]


def test_two_workers_match_one_process_and_only_the_chief_writes(tmp_path):
    single = tmp_path / "single"
    subprocess.run([*MULTI, "--output-dir", str(single)], check=True, env=ENV, timeout=600, capture_output=True)
    ports = _free_ports(2)
    workers = [
        subprocess.Popen(
            [*MULTI, "--strategy", "multi_worker", "--output-dir", str(tmp_path / f"w{i}")],
            env=_worker_env(ports, i),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    assert (tmp_path / "w0" / "model.keras").is_file() and list((tmp_path / "w0" / "checkpoints").glob("*.index"))
    assert not (tmp_path / "w1" / "model.keras").exists() and not (tmp_path / "w1" / "checkpoints").exists()
    for a, b in zip(_weights(tmp_path / "w0"), _weights(single)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_dead_worker_stops_the_job_with_a_clear_error_and_restart_resumes(tmp_path):
    ports = _free_ports(2)
    command = [
        *MULTI[: MULTI.index("--epochs")],
        "--epochs",
        "40",
        "--strategy",
        "multi_worker",
        "--checkpoint-every",
        "5",
        "--cnn-normalization",
        "none",
    ]
    env = {"SAT_TF_COLLECTIVE_TIMEOUT": "20"}
    shared = tmp_path / "shared"  # one output folder for the job, as on a shared filesystem
    workers = [
        subprocess.Popen(
            [*command, "--output-dir", str(shared)],
            env=_worker_env(ports, i, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.time() + 300
    while not list((shared / "checkpoints").glob("ckpt-*.index")) and time.time() < deadline:
        time.sleep(0.2)
    workers[1].send_signal(signal.SIGKILL)
    started = time.time()
    _, err = workers[0].communicate(timeout=240)
    assert workers[0].returncode == 2, err[-3000:]
    assert "a worker failed" in err and "--resume" in err
    assert time.time() - started < 200
    workers[1].wait()
    ports = _free_ports(2)
    short = [*command[: command.index("--epochs")], "--epochs", "1", *command[command.index("--epochs") + 2 :]]
    restarted = [
        subprocess.Popen(
            [*short, "--output-dir", str(shared), "--resume"],
            env=_worker_env(ports, i),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in restarted]
    for worker, (_, err) in zip(restarted, outputs):
        assert worker.returncode == 0, err[-3000:]
    assert all("resumed from" in out for out, _ in outputs)
    assert (shared / "model.keras").is_file()
