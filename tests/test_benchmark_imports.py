"""Every benchmark imports sat_tf before TensorFlow or Keras: sat_tf chooses the oneDNN kernels
(TF_ENABLE_ONEDNN_OPTS) as its commands do, and TensorFlow reads that switch once, when it loads, so
a benchmark that loads TensorFlow first measures other kernels than users get (AVX2-only CPUs).
Read from the scripts' source (nothing is run); sibling modules count by what they import first."""

import ast
from functools import cache
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TENSORFLOW = {"tensorflow", "keras", "tf_keras"}


def _imported_modules(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


@cache
def first_heavy_import(module: str) -> str | None:
    """'sat_tf' or 'tensorflow', whichever a benchmark module (transitively) loads first; None if neither."""
    for node in ast.parse((BENCHMARKS / f"{module}.py").read_text()).body:  # what runs when it starts, in order
        for name in _imported_modules(node):
            if name == "sat_tf":
                return "sat_tf"
            if name in TENSORFLOW:
                return "tensorflow"
            if (BENCHMARKS / f"{name}.py").is_file() and name != module:
                found = first_heavy_import(name)
                if found is not None:
                    return found
    return None


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_a_benchmark_loads_sat_tf_before_tensorflow(script):
    assert first_heavy_import(script) != "tensorflow", (
        f"benchmarks/{script}.py loads TensorFlow or Keras before sat_tf; import sat_tf first"
    )


def test_the_check_catches_tensorflow_first(tmp_path, monkeypatch):
    (tmp_path / "helper.py").write_text("import os\nimport keras\n")
    (tmp_path / "bad.py").write_text("import helper\nimport sat_tf\n")
    (tmp_path / "good.py").write_text("import sat_tf\nimport helper\n")
    monkeypatch.setattr(__import__(__name__), "BENCHMARKS", tmp_path)
    first_heavy_import.cache_clear()
    try:
        assert first_heavy_import("bad") == "tensorflow" and first_heavy_import("good") == "sat_tf"
    finally:
        first_heavy_import.cache_clear()
