"""A resumable on-disk cache of encoder features, so training never reruns a frozen CNN.

Layout of a cache folder:
    manifest.json        what produced the cache (encoder config and weights fingerprint, input
                         size, feature shape, the ordered image list's checksum) and its shards
    shard-00000.npy ...  float16 features [n, L, D] of consecutive images

Each shard is written to a temporary name and renamed, then recorded in the manifest (also
written atomically), so an interrupted extraction resumes at the first missing shard and a
half-written shard is never read. A cache whose manifest does not match the encoder or image list
in use is refused as stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sat_tf.errors import SatTfError
from sat_tf.utils.atomic import atomic_path, write_json_atomic
from sat_tf.utils.checksums import file_sha256

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class StaleCacheError(SatTfError, ValueError):
    """The cache was made by another encoder, another image list, or is incomplete."""


def list_checksum(paths: Sequence[str]) -> str:
    """sha256 of the ordered image list (names only: a moved dataset keeps its cache)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(path).encode("utf-8") + b"\n")
    return digest.hexdigest()


@dataclasses.dataclass
class CacheIdentity:
    """What must match for a cache to be reused."""

    encoder: dict  # encoder config (backbone, image size, feature layer, ...)
    encoder_fingerprint: str  # sha256 of the encoder's weights
    images_checksum: str
    num_images: int
    photo_view: str | None = None  # a `PhotoView`'s name; None: the photos as they are


def _read_manifest(cache_dir: Path) -> dict | None:
    path = cache_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise StaleCacheError(f"{path}: unreadable manifest ({exc})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StaleCacheError(f"{path}: cache format {manifest.get('format_version')} is not {FORMAT_VERSION}")
    return manifest


def _check_identity(manifest: dict, identity: CacheIdentity, cache_dir: Path) -> None:
    recorded = manifest["identity"]
    for key, value in dataclasses.asdict(identity).items():
        if recorded.get(key) == value:
            continue
        what = key.replace("_", " ")
        if isinstance(value, dict) and isinstance(recorded.get(key), dict):
            differing = sorted(k for k in set(value) | set(recorded[key]) if value.get(k) != recorded[key].get(k))
            details = "; ".join(
                f"{k}: cache has {recorded[key].get(k)!r}, this run has {value.get(k)!r}" for k in differing
            )
        elif key == "encoder_fingerprint":
            details = "the encoder's weights differ (other pretrained weights, or none)"
        else:
            details = f"cache has {recorded.get(key)!r}, this run has {value!r}"
        raise StaleCacheError(
            f"{cache_dir}: cache was made with a different {what} ({details}); use the "
            f"settings it was made with, or extract to another folder"
        )


def cache_settings(cache_dir: str | os.PathLike) -> dict:
    """The encoder settings a cache was extracted with (`settings` given to `extract_features`)."""
    manifest = _read_manifest(Path(cache_dir))
    if manifest is None:
        raise StaleCacheError(f"{cache_dir}: no feature cache here (missing {MANIFEST})")
    return dict(manifest.get("settings", {}))


def extract_features(
    encode: Callable[[np.ndarray], np.ndarray],
    load_batch: Callable[[Sequence[str]], np.ndarray],
    image_paths: Sequence[str],
    cache_dir: str | os.PathLike,
    identity: CacheIdentity,
    batch_size: int = 32,
    shard_size: int = 1024,
    verbose: bool = True,
    settings: dict | None = None,
) -> dict:
    """Fills `cache_dir` with features of `image_paths`, resuming after the last complete shard.

    Args:
        encode: images [B, S, S, 3] -> features [B, L, D].
        load_batch: paths -> images [B, S, S, 3] (uint8).
        image_paths: the images, in the order training indexes them.
        cache_dir: the cache folder (created if needed).
        identity: what produced the features; a mismatch with an existing cache is an error.
        batch_size: images per encoder call.
        shard_size: images per shard file.
        settings: what a run needs to rebuild the encoder (recorded, not checked: the identity is).
    Returns:
        The manifest.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(cache_dir)
    if manifest is None:
        manifest = {
            "format_version": FORMAT_VERSION,
            "identity": dataclasses.asdict(identity),
            "settings": settings or {},
            "shard_size": shard_size,
            "shards": [],
            "complete": False,
        }
    else:
        _check_identity(manifest, identity, cache_dir)
        shard_size = manifest["shard_size"]
    total = len(image_paths)
    starts = list(range(0, total, shard_size))
    done = {shard["file"] for shard in manifest["shards"]}
    started, processed = time.perf_counter(), 0
    for number, start in enumerate(starts):
        name = f"shard-{number:05d}.npy"
        if name in done and (cache_dir / name).is_file():
            continue
        paths = image_paths[start : start + shard_size]
        parts = [encode(load_batch(paths[i : i + batch_size])) for i in range(0, len(paths), batch_size)]
        features = np.concatenate(parts).astype(np.float16)
        with atomic_path(cache_dir / name) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, features)
        manifest["feature_shape"] = list(features.shape[1:])
        manifest["shards"] = [s for s in manifest["shards"] if s["file"] != name]
        manifest["shards"].append(
            {"file": name, "start": start, "count": len(paths), "sha256": file_sha256(cache_dir / name)}
        )
        manifest["shards"].sort(key=lambda s: s["start"])
        write_json_atomic(cache_dir / MANIFEST, manifest)
        processed += len(paths)
        if verbose:
            rate = processed / max(time.perf_counter() - started, 1e-9)
            print(f"extracted {start + len(paths)}/{total} images ({rate:.1f} images/s)", file=sys.stderr, flush=True)
    manifest["complete"] = sum(s["count"] for s in manifest["shards"]) == total
    write_json_atomic(cache_dir / MANIFEST, manifest)
    return manifest


class FeatureCache:
    """Read access to a complete cache: `gather(indices)` -> float32 features [B, L, D].

    Rows are read from the shard files with positioned reads (`os.pread`) rather than memory
    maps: mapped pages count towards the process's resident memory once touched, so an epoch over
    a memory-mapped cache would grow RSS to the cache's size, while reads leave the data in the
    OS page cache only. A truncated shard is refused when the cache is opened.
    """

    def __init__(self, cache_dir: str | os.PathLike, identity: CacheIdentity | None = None, verify: bool = False):
        self.cache_dir = Path(cache_dir)
        manifest = _read_manifest(self.cache_dir)
        if manifest is None:
            raise StaleCacheError(f"{self.cache_dir}: no feature cache here (missing {MANIFEST})")
        if not manifest.get("complete"):
            raise StaleCacheError(f"{self.cache_dir}: extraction did not finish; run it again to resume")
        if identity is not None:
            _check_identity(manifest, identity, self.cache_dir)
        self.manifest = manifest
        self.shard_size = manifest["shard_size"]
        self.feature_shape = tuple(manifest["feature_shape"])
        self.num_images = manifest["identity"]["num_images"]
        self._shards = []  # (file descriptor, data offset, dtype) per shard
        for shard in manifest["shards"]:
            path = self.cache_dir / shard["file"]
            if verify and file_sha256(path) != shard["sha256"]:
                raise StaleCacheError(f"{path}: checksum mismatch (corrupt shard)")
            self._shards.append(self._open_shard(path, shard["count"]))

    def _open_shard(self, path: Path, count: int) -> tuple[int, int, np.dtype]:
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
                offset = f.tell()
        except (OSError, ValueError) as exc:
            raise StaleCacheError(f"{path}: not a readable feature shard ({exc})") from exc
        if shape != (count, *self.feature_shape):
            raise StaleCacheError(f"{path}: shape {shape} does not match the manifest")
        expected = offset + count * int(np.prod(self.feature_shape)) * dtype.itemsize
        if path.stat().st_size < expected:
            raise StaleCacheError(f"{path}: truncated ({path.stat().st_size} of {expected} bytes)")
        return os.open(path, os.O_RDONLY), offset, dtype

    def close(self) -> None:
        for fd, _, _ in self._shards:
            os.close(fd)
        self._shards = []

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __len__(self) -> int:
        return self.num_images

    def gather(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        out = np.empty((len(indices), *self.feature_shape), np.float32)
        row_values = int(np.prod(self.feature_shape))
        for k, index in enumerate(indices):
            shard, row = divmod(int(index), self.shard_size)
            fd, offset, dtype = self._shards[shard]
            size = row_values * dtype.itemsize
            data = os.pread(fd, size, offset + row * size)
            out[k] = np.frombuffer(data, dtype).reshape(self.feature_shape)
        return out
