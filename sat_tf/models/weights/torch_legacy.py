"""Reads PyTorch's legacy (pre-1.6, non-zip) `.pth` checkpoints into numpy, without torch.

The legacy format is a sequence of pickles: a magic number, the protocol version, system info, the
pickled object (tensors refer to storages through pickle's persistent ids), the list of storage
keys, and then, for every storage in that order, its element count (int64) and raw bytes.
Only what state dicts need is supported; anything else in the pickle is refused, so an untrusted
file cannot run code.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import struct
from typing import BinaryIO

import numpy as np

from sat_tf.utils.checksums import file_sha256

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


@dataclasses.dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple

    def to_numpy(self) -> np.ndarray:
        if self.storage.data is None:
            raise TorchFileError(f"storage {self.storage.key} was never read")
        base = self.storage.data[self.offset :]
        itemsize = base.dtype.itemsize
        if not self.shape:
            return base[:1].reshape(()).copy()
        return np.lib.stride_tricks.as_strided(
            base, shape=self.shape, strides=[s * itemsize for s in self.stride]
        ).copy()


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise TorchFileError(f"unsupported object in checkpoint: {module}.{name}")

    def persistent_load(self, saved_id):
        kind, storage_type, key, _location, numel, *_ = saved_id
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"unsupported persistent id {saved_id!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self.storages[key]


def load_legacy_state_dict(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Returns {name: array} from a legacy `.pth` state dict.

    Raises:
        TorchFileError: wrong checksum, not a legacy checkpoint, truncated, or unsupported content.
    """
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise TorchFileError(f"{path}: sha256 {actual} does not match the expected {expected_sha256}")
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
            if magic != LEGACY_MAGIC:
                raise TorchFileError(f"{path}: not a legacy PyTorch checkpoint (magic {magic!r})")
            if pickle.load(f) != LEGACY_PROTOCOL:
                raise TorchFileError(f"{path}: unsupported legacy protocol version")
            sys_info = pickle.load(f)
            if not sys_info.get("little_endian", True):
                raise TorchFileError(f"{path}: big-endian checkpoints are not supported")
            state = _Unpickler(f, storages).load()
            keys = pickle.load(f)
            for key in keys:
                storage = storages[key]
                (numel,) = struct.unpack("<q", f.read(8))
                raw = f.read(numel * storage.dtype.itemsize)
                if numel != storage.numel or len(raw) != numel * storage.dtype.itemsize:
                    raise TorchFileError(f"{path}: storage {key} is truncated or inconsistent")
                storage.data = np.frombuffer(raw, dtype=storage.dtype)
        except (pickle.UnpicklingError, EOFError, struct.error, KeyError, AttributeError) as exc:
            raise TorchFileError(f"{path}: damaged or unsupported checkpoint ({exc})") from None
    if not isinstance(state, dict):
        raise TorchFileError(f"{path}: the checkpoint holds a {type(state).__name__}, not a state dict")
    return {name: value.to_numpy() for name, value in state.items() if isinstance(value, _TensorRef)}
