"""What the CPU offers: its model name and the instruction-set flags that decide TensorFlow's speed.

Speed figures mean little without them: oneDNN's kernels, native bfloat16 and TensorFlow's own
defaults all depend on AVX2 / AVX-512 / AVX512-BF16 / AMX, which differ between machines of the
same name.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The flags a speed figure depends on, in the order they are reported.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def _cpuinfo_fields(cpuinfo: str | Path) -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo ({} where it cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing, as on macOS or Windows)."""
    return set(_cpuinfo_fields(cpuinfo).get("flags", "").split())


def describe_cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """{"model", "speed_flags"}: the CPU's name and which of `SPEED_FLAGS` it has, for results files."""
    fields = _cpuinfo_fields(cpuinfo)
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", "unknown"), "speed_flags": [f for f in SPEED_FLAGS if f in flags]}


def describe_machine(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """One line for a results file: CPU model, architecture, cores and the flags speed depends on."""
    cpu = describe_cpu(cpuinfo)
    flags = " ".join(cpu["speed_flags"]) or f"none of {' '.join(SPEED_FLAGS)}"
    return f"{cpu['model']} ({platform.machine()}), {os.cpu_count()} CPU cores, flags: {flags}"
