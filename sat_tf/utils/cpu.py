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


# The CPU kernel paths TensorFlow takes, as the environment that selects each before TensorFlow
# loads. Every machine can run the first three; what it runs by default depends on its CPU (AMX and
# AVX512-BF16 only where the flags list them), so tests and benchmarks that must hold on every CPU
# run each of these in a fresh process.
KERNEL_PATHS: dict[str, dict[str, str]] = {
    "onednn": {"TF_ENABLE_ONEDNN_OPTS": "1"},  # oneDNN at this CPU's best ISA (AMX where present)
    "onednn_avx2": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},  # as on an AVX2-only CPU
    "eigen": {"TF_ENABLE_ONEDNN_OPTS": "0"},  # oneDNN off: TensorFlow's own Eigen kernels
}


def kernel_path_environment(path: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the settings of `KERNEL_PATHS[path]`,
    and none of the kernel settings a caller may have set for another path."""
    if path not in KERNEL_PATHS:
        raise ValueError(f"kernel path must be one of {', '.join(KERNEL_PATHS)}; got '{path}'")
    environment = dict(os.environ if base is None else base)
    for settings in KERNEL_PATHS.values():
        for name in settings:
            environment.pop(name, None)
    return {**environment, **KERNEL_PATHS[path]}


def parse_onednn_verbose(log: str) -> dict:
    """What oneDNN ran, from the lines it prints under ONEDNN_VERBOSE=1: the ISA it detected, each
    kernel implementation it executed (kind and name, with its number of calls) and whether any of
    them is an AMX kernel (`brg_matmul:avx512_core_amx`, ...)."""
    isa, implementations = "oneDNN did not run", dict[str, int]()
    for line in log.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or len(fields) < 5:
            continue
        if fields[2:4] == ["info", "cpu"] and fields[4].startswith("isa:"):
            isa = line.split("isa:", 1)[1]  # the name itself may hold commas
        elif fields[2:5] == ["primitive", "exec", "cpu"] and len(fields) > 6:
            name = f"{fields[5]} {fields[6]}"
            implementations[name] = implementations.get(name, 0) + 1
    return {"isa": isa, "implementations": implementations, "amx": any("amx" in name for name in implementations)}
