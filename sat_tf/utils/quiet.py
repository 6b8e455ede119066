"""Silencing what native code writes straight to the process's stderr (file descriptor 2).

TensorFlow's C++ start-up lines (CUDA probing, oneDNN notices) and coco-caption's Java tools
write to fd 2 directly, below Python's `sys.stderr`, so only a descriptor-level redirect hides
them. Python-level errors raised inside the block still propagate normally.
"""

from __future__ import annotations

import contextlib
import os
import sys


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
    sys.stderr.flush()
    python_stream = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
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
