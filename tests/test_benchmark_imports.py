"""Every benchmark imports sat_tf before TensorFlow or Keras: sat_tf chooses the oneDNN kernels
(TF_ENABLE_ONEDNN_OPTS) as its commands do, and TensorFlow reads that switch once, when it loads, so
a benchmark that loads TensorFlow first measures other kernels than users get (AVX2-only CPUs).
Read from the scripts' source (nothing is run); sibling modules count by what they import first."""

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # benchmarks run as modules of the repository root
TENSORFLOW = {"tensorflow", "keras", "tf_keras"}


def _module_file(dotted: str) -> Path | None:
    path = ROOT / (dotted.replace(".", "/") + ".py")
    return path if path.is_file() else None


def _imported_modules(node: ast.stmt) -> list[str]:
    """Dotted names a statement imports (`from benchmarks import common` names benchmarks.common)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


@cache
def first_heavy_import(module: str) -> str | None:
    """'sat_tf' or 'tensorflow', whichever a benchmark module (transitively) loads first; None if neither."""
    file = _module_file(module)
    assert file is not None, module
    for node in ast.parse(file.read_text()).body:  # what runs when it starts, in order
        for name in _imported_modules(node):
            top = name.split(".")[0]
            if top == "sat_tf":
                return "sat_tf"
            if top in TENSORFLOW:
                return "tensorflow"
            if name != module and _module_file(name) is not None:
                found = first_heavy_import(name)
                if found is not None:
                    return found
    return None


SCRIPTS = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for path in (ROOT / "benchmarks").rglob("*.py")
    if path.name != "__init__.py"
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_loads_sat_tf_before_tensorflow(script):
    assert first_heavy_import(script) != "tensorflow", (
        f"{script} loads TensorFlow or Keras before sat_tf; import sat_tf first"
    )


def test_benchmarks_are_sorted_into_folders_and_edit_no_sys_path():
    assert len(SCRIPTS) > 30
    loose = [s for s in SCRIPTS if s.count(".") == 1 and s not in ("benchmarks.common", "benchmarks.results_page")]
    assert loose == [], "a benchmark belongs in speed/, quality/, serving/, deployment/ or studies/"
    for script in SCRIPTS:
        assert "sys.path" not in _module_file(script).read_text(), f"{script} edits sys.path"


def test_the_check_catches_tensorflow_first(tmp_path, monkeypatch):
    (tmp_path / "helper.py").write_text("import os\nimport keras\n")
    (tmp_path / "bad.py").write_text("import helper\nimport sat_tf\n")
    (tmp_path / "good.py").write_text("import sat_tf\nimport helper\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    first_heavy_import.cache_clear()
    try:
        assert first_heavy_import("bad") == "tensorflow" and first_heavy_import("good") == "sat_tf"
    finally:
        first_heavy_import.cache_clear()
