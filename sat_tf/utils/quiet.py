"""Silencing what native code writes straight to the process's stderr (file descriptor 2).

TensorFlow's C++ start-up lines (CUDA probing, oneDNN notices) and coco-caption's Java tools
write to fd 2 directly, below Python's `sys.stderr`, so only a descriptor-level redirect hides
them. Python-level errors raised inside the block still propagate normally.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile


@contextlib.contextmanager
def silenced_stderr(enabled: bool = True):
    """Sends file descriptor 2 to /dev/null inside the block (a no-op when not `enabled`)."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """For a whole command: what native code and child processes write to fd 2 is dropped, while
    Python's own `sys.stderr` (error messages, warnings, tracebacks) still reaches the terminal.

    Only when `sys.stderr` is the process's real stderr (not when a test harness captures it)."""
    if not enabled or sys.stderr is not sys.__stderr__:
        yield
        return
    real_stderr = sys.__stderr__
    assert real_stderr is not None  # sys.stderr is it (checked above), and it exists
    real_stderr.flush()
    python_stream = os.fdopen(os.dup(2), "w", buffering=1, encoding=real_stderr.encoding, errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = python_stream
    try:
        yield
    finally:
        python_stream.flush()
        sys.stderr = sys.__stderr__
        os.dup2(saved, 2)
        os.close(saved)
        python_stream.close()


VERBOSE_VARIABLE = "SAT_TF_VERBOSE"  # "1": show TensorFlow's start-up lines
# What TensorFlow writes to fd 2 while it starts: absl's pre-initialisation notice, info and warning
# lines (oneDNN, CPU features, "could not find cuda drivers"), and the GPU probe's failure on a
# machine without one. Anything else it writes while starting is shown.
_START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} "
    r"|To enable the following instructions:"
    r"|E\d{4} .*(cuInit|cuda_|cudart|cuDNN|cuFFT|cuBLAS|Unable to register))"
)


def start_up_lines_to_show(captured: str) -> list[str]:
    """The lines TensorFlow wrote while starting that are not start-up noise (real errors)."""
    return [line for line in captured.splitlines() if line.strip() and not _START_UP_NOISE.match(line)]


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes its devices with fd 2 captured, then writes back only the
    lines that are not start-up noise, so `import sat_tf.models` prints nothing on a healthy
    machine. A no-op when TensorFlow is already imported or `SAT_TF_VERBOSE=1`."""
    if "tensorflow" in sys.modules or os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the GPU probe logs here, not at first use
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            shown = start_up_lines_to_show(captured.read().decode("utf-8", "backslashreplace"))
    for line in shown:
        print(line, file=sys.stderr)
