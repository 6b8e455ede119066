"""The front door is true: README.md and docs/ name only files that exist, every `sat-tf` command
they show parses, the README's Python example runs quietly, and benchmarks/RESULTS.md is what the
results files give."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sat_tf.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
# Backquoted paths into these folders name files of the repository (not run outputs such as runs/).
REPOSITORY_FOLDERS = ("sat_tf/", "benchmarks/", "docs/", "export/", "tests/", "notebooks/", ".ci/")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def named_paths(document: Path) -> list[str]:
    text = document.read_text(encoding="utf-8")
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in link]
    quoted = [q for q in re.findall(r"`([^`\s]+)`", text) if q.startswith(REPOSITORY_FOLDERS)]
    return [p for p in links + quoted if not re.search(r"[<>*{}]|\bX\b|NAME|RUN", p)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_named_file_exists(document):
    assert document.is_file(), f"{document.name} is linked from the README but missing"
    missing = []
    for path in named_paths(document):
        relative_to = document.parent if not path.startswith(REPOSITORY_FOLDERS) else ROOT
        if not (relative_to / path.rstrip("/")).exists():
            missing.append(path)
    assert not missing, f"{document.relative_to(ROOT)} names missing files: {missing}"


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert not re.search(r"\bsessions?\b|this 2-core machine|against the goals", text, flags=re.I)
    install, main_job, _, tests = code_blocks(text, "bash")[0].splitlines()[:4]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install.split("#")[0].strip() in ci and tests.split("#")[0].strip() in ci  # CI runs what it says
    assert main_job.startswith("sat-tf caption")


def sat_tf_commands(text: str) -> list[list[str]]:
    commands = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("sat-tf "):
                commands.append(shlex.split(line)[1:])
    return commands


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_command_shown_parses(document):
    parser = build_parser()
    for argv in sat_tf_commands(document.read_text(encoding="utf-8")):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{document.name}: `sat-tf {' '.join(argv)}` does not parse")


def test_the_readme_python_example_runs_and_prints_only_its_caption(tmp_path):
    example = code_blocks((ROOT / "README.md").read_text(encoding="utf-8"), "python")[0]
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    env = {k: v for k, v in os.environ.items() if k not in ("SAT_TF_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    run = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0].split()) >= 2  # one caption of words
    assert run.stderr == ""


def test_results_page_is_generated_from_the_results_files():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "results_page.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
