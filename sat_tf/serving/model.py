"""The SavedModel a server serves: finding its version in TF Serving's layout, loading it (now or in
the background), running a signature on a batch of images, and describing its signatures as TF
Serving's metadata does."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from sat_tf.errors import SatTfError

ERROR_LOG = logging.getLogger("sat_tf.serving")
# TF Serving's names for the dtypes a SignatureDef lists.
TF_SERVING_DTYPES = {
    tf.string: "DT_STRING",
    tf.float32: "DT_FLOAT",
    tf.int32: "DT_INT32",
    tf.int64: "DT_INT64",
    tf.bool: "DT_BOOL",
    tf.float16: "DT_HALF",
    tf.uint8: "DT_UINT8",
}


class ModelDirectoryError(SatTfError, FileNotFoundError):
    """The folder to serve holds no SavedModel in TF Serving's layout."""


def latest_version(model_base: Path) -> tuple[int, Path]:
    if not model_base.is_dir():
        raise ModelDirectoryError(f"{model_base}: model folder not found")
    versions = [int(p.name) for p in model_base.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise ModelDirectoryError(f"{model_base}: no numbered version folder (TF Serving layout <name>/<version>/)")
    return max(versions), model_base / str(max(versions))


def resolve_model_dir(model_dir: str | os.PathLike, model_name: str | None = None) -> tuple[str, int, Path]:
    """(model name, version, version folder) of a TF Serving base path `<name>/` or a version folder."""
    model_dir = Path(model_dir)
    if (model_dir / "saved_model.pb").is_file():
        version = int(model_dir.name) if model_dir.name.isdigit() else 1
        return model_name or model_dir.parent.name, version, model_dir
    version, version_dir = latest_version(model_dir)
    return model_name or model_dir.name, version, version_dir


def _tensor_info(spec: tf.TensorSpec, tensor_name: str) -> dict:
    """A TensorSpec in TF Serving's TensorInfo JSON (as `GET .../metadata` answers)."""
    if spec.shape.rank is None:
        shape = {"dim": [], "unknown_rank": True}
    else:
        shape = {
            "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()],
            "unknown_rank": False,
        }
    return {
        "dtype": TF_SERVING_DTYPES.get(spec.dtype, f"DT_{spec.dtype.name.upper()}"),
        "tensor_shape": shape,
        "name": tensor_name,
    }


def signature_metadata(signatures: dict) -> dict:
    """The signatures as TF Serving's `signature_def` map (inputs, outputs, method name)."""
    described = {}
    for key, function in signatures.items():
        inputs = function.structured_input_signature[1]
        described[key] = {
            "inputs": {name: _tensor_info(spec, f"{key}_{name}:0") for name, spec in inputs.items()},
            "outputs": {
                name: _tensor_info(spec, f"StatefulPartitionedCall:{i}")
                for i, (name, spec) in enumerate(sorted(function.structured_outputs.items()))
            },
            "method_name": "tensorflow/serving/predict",
        }
    return {"signature_def": described}


class ServedModel:
    """The SavedModel behind the routes, loaded now or in the background (`state` is TF Serving's:
    LOADING until the signatures are ready, then AVAILABLE; END with `error` if loading failed)."""

    def __init__(self, version_dir: Path, background: bool = False):
        self.version_dir = version_dir
        self.signatures: dict = {}
        self.image_size: int | None = None  # the model's input size, once loaded
        self.state, self.error = "LOADING", ""
        self.loaded = threading.Event()
        if background:
            threading.Thread(target=self._load, name="sat_tf-model-loader", daemon=True).start()
        else:
            self._load()
            if self.error:
                raise ModelDirectoryError(self.error)

    def _load(self) -> None:
        try:
            self.signatures = dict(tf.saved_model.load(str(self.version_dir)).signatures)
            if "caption_images" in self.signatures:  # its input is [None, S, S, 3]
                (spec,) = self.signatures["caption_images"].structured_input_signature[1].values()
                self.image_size = int(spec.shape[1])
            self.state = "AVAILABLE"
        except Exception as exc:  # noqa: BLE001 - reported as the model's status
            ERROR_LOG.exception("could not load %s", self.version_dir)
            self.state, self.error = "END", f"{self.version_dir}: could not load the SavedModel ({exc})"
        finally:
            self.loaded.set()

    def image_signatures(self) -> list[str]:
        return sorted(s for s in self.signatures if s != "caption_images")

    def run_batch(self, signature_name: str, images) -> dict[str, np.ndarray]:
        outputs = self.signatures[signature_name](image_bytes=tf.constant(list(images)))
        return {key: value.numpy() for key, value in outputs.items()}
