"""What differs between the CPUs the suite meets, run on every machine.

CI and developers draw AMD AVX-512 + bf16, Intel AMX and AVX2-only machines, and TensorFlow's
kernels differ between them (oneDNN's ISA, AMX for bfloat16, Eigen where oneDNN is off), so a
number a test checks can move with the CPU. Each kernel path of `sat_tf.utils.cpu.KERNEL_PATHS`
runs here in a fresh process (the settings are read once, when TensorFlow loads):
- one training step's loss and gradients, in float32 and in mixed_bfloat16, agree across paths;
- the `trained_tiny_model` fixture reaches what it promises (distinct, decisive captions) on each;
- `precision: auto` resolves by the CPU's flags, to mixed_bfloat16 or float32, as each CPU would.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sat_tf.training.precision import resolve_precision
from sat_tf.utils.cpu import KERNEL_PATHS, kernel_path_environment

TESTS = Path(__file__).resolve().parent
# oneDNN capped at AVX2 on a CPU that has AVX-512 still gets TensorFlow's bfloat16 convolutions,
# which AVX2 kernels cannot run; a real AVX2-only CPU computes bfloat16 with Eigen (the "eigen" path).
BFLOAT16_PATHS = [path for path in KERNEL_PATHS if path != "onednn_avx2"]

# Runs in the tests folder (conftest importable): one step's loss and flattened gradients under
# each precision, then the fixture's training, as JSON on the last line.
WORKER = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    import tensorflow as tf
    from conftest import fixed_batch, make_tiny_model, tiny_data_set, train_tiny_captioner
    from sat_tf.training import CaptioningTask
    from sat_tf.training.precision import dtype_policy

    data = tiny_data_set()
    report = {}
    for precision in sys.argv[1:]:
        with dtype_policy(precision):
            model = make_tiny_model(data[1], seed=5)
        task = CaptioningTask(model)
        with tf.GradientTape() as tape:
            loss, _ = task.compute_caption_loss(fixed_batch(data, size=16), training=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        report[precision] = {
            "loss": float(loss),
            "gradients": np.concatenate([tf.reshape(g, [-1]).numpy() for g in gradients]).tolist(),
        }
    report["fixture_steps"] = train_tiny_captioner(data)[1]
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def kernel_path_reports():
    reports = {}
    for path in KERNEL_PATHS:
        result = subprocess.run(
            [sys.executable, "-c", WORKER, "float32", *(["mixed_bfloat16"] if path in BFLOAT16_PATHS else [])],
            cwd=TESTS,
            env={**kernel_path_environment(path), "TF_CPP_MIN_LOG_LEVEL": "3"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"kernel path {path}:\n{result.stderr[-3000:]}"
        reports[path] = json.loads(result.stdout.strip().splitlines()[-1])
    return reports


def _cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("path", [p for p in KERNEL_PATHS if p != "onednn"])
def test_a_float32_step_computes_the_same_loss_and_gradients_on_every_kernel_path(kernel_path_reports, path):
    reference, other = kernel_path_reports["onednn"]["float32"], kernel_path_reports[path]["float32"]
    # float32 sums in another order: relative differences of a few ulps per op, ~1e-6 after the step
    np.testing.assert_allclose(other["loss"], reference["loss"], rtol=1e-5)
    gradients = np.asarray(reference["gradients"])
    np.testing.assert_allclose(other["gradients"], gradients, rtol=1e-3, atol=1e-5 * np.abs(gradients).max())


@pytest.mark.parametrize("path", BFLOAT16_PATHS)
def test_a_bfloat16_step_follows_the_float32_step_on_every_kernel_path(kernel_path_reports, path):
    full, mixed = kernel_path_reports[path]["float32"], kernel_path_reports[path]["mixed_bfloat16"]
    assert mixed["gradients"] != full["gradients"]  # it did compute in bfloat16
    # bfloat16 keeps 8 mantissa bits (0.4% per value): the loss within 2%, the gradient's direction kept
    np.testing.assert_allclose(mixed["loss"], full["loss"], rtol=0.02)
    assert _cosine(mixed["gradients"], full["gradients"]) > 0.99


@pytest.mark.parametrize("path", list(KERNEL_PATHS))
def test_the_trained_fixture_keeps_its_promise_on_every_kernel_path(kernel_path_reports, path):
    from conftest import FIXTURE_MAX_STEPS

    # train_tiny_captioner raises (and the worker fails) unless captions differ and are decisive
    assert 0 < kernel_path_reports[path]["fixture_steps"] <= FIXTURE_MAX_STEPS


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("avx2 fma avx512f avx512_bf16", "mixed_bfloat16"),  # AMD EPYC (Zen 4)
        ("avx2 fma avx512f avx512_fp16 amx_bf16 amx_int8 amx_tile", "mixed_bfloat16"),  # Intel with AMX
        ("avx2 fma", "float32"),  # AVX2 only
    ],
)
def test_auto_precision_resolves_by_the_cpus_flags(tmp_path, monkeypatch, flags, expected):
    from sat_tf.training import precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor : 0\nflags : fpu sse2 {flags}\n")
    read_flags = precision.cpu_flags
    monkeypatch.setattr(precision, "cpu_flags", lambda path: read_flags(cpuinfo))  # this CPU's /proc/cpuinfo
    monkeypatch.setattr(precision, "gpus_support_bfloat16", lambda: None)  # a CPU-only machine
    assert resolve_precision("auto") == expected


def test_a_kernel_path_replaces_the_settings_of_another():
    environment = kernel_path_environment(
        "eigen", {"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "1", "HOME": "/h"}
    )
    assert environment == {"TF_ENABLE_ONEDNN_OPTS": "0", "HOME": "/h"}
    with pytest.raises(ValueError, match="kernel path"):
        kernel_path_environment("amx")
