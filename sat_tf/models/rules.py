"""The rules a captioner's settings obey, written once: the layers check their arguments with them,
and `ModelConfig` checks a config file's values with them (naming the config key) before any
layer is built."""

from __future__ import annotations

from typing import Sequence


def require_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    """Raises ValueError naming `name` when `value` is not one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got '{value}'")


def require_location_samples(name: str, location_samples: int, hard_baseline: str) -> None:
    """Hard attention samples at least one location sequence per caption, two with the
    leave-one-out baseline (which needs another sample to compare with)."""
    if location_samples < (2 if hard_baseline == "leave_one_out" else 1):
        raise ValueError(
            f"{name} must be >= 2 with the leave-one-out baseline (>= 1 otherwise); got {location_samples}"
        )


def require_probability(name: str, value: float) -> None:
    """Raises ValueError naming `name` unless 0 <= value <= 1."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
