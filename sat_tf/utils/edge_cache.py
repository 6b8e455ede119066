"""Where `sat-tf caption` keeps a shipped preset's TFLite pair for its fast path.

The pair is built once, from the preset's own weights, the first time the command captions with
that preset, into `$SAT_TF_CACHE` (default `~/.cache/sat_tf`) under `edge/<preset>-<fingerprint>`;
the fingerprint changes with the preset's files, so an upgraded preset gets a fresh pair. Nothing
here imports TensorFlow: the fast path looks the pair up before deciding to start it.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path

PRESET_CONFIG, PRESET_WEIGHTS = "config.json", "weights.npz"


def cache_root() -> Path:
    return Path(os.environ.get("SAT_TF_CACHE") or Path.home() / ".cache" / "sat_tf")


def _preset_folder(name: str) -> Path | None:
    folder = Path(str(resources.files("sat_tf.presets"))) / name
    return folder if "/" not in name and (folder / PRESET_CONFIG).is_file() else None


def shipped_preset_config(name: str) -> dict | None:
    """A shipped preset's config.json, or None when `name` is not a shipped preset."""
    folder = _preset_folder(name)
    return None if folder is None else json.loads((folder / PRESET_CONFIG).read_text(encoding="utf-8"))


def preset_pair_dir(name: str) -> Path | None:
    """The cache folder of a shipped preset's TFLite pair (it may not exist yet), or None when
    `name` is not a shipped preset."""
    folder = _preset_folder(name)
    if folder is None:
        return None
    digest = hashlib.sha256((folder / PRESET_CONFIG).read_bytes())
    digest.update(str((folder / PRESET_WEIGHTS).stat().st_size).encode())
    return cache_root() / "edge" / f"{name}-{digest.hexdigest()[:16]}"
