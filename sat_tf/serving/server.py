"""A local server with TensorFlow Serving's REST contract, for the exported SavedModel.

    GET  /v1/models/<name>            -> {"model_version_status": [{"version", "state": "AVAILABLE", ...}]}
    GET  /v1/models/<name>/metadata   -> the signatures' inputs and outputs
    POST /v1/models/<name>:predict    {"instances": [{"b64": "..."}, ...]}  (or {"signature_name": ...,
                                      "instances": [{"image_bytes": {"b64": "..."}}, ...]})
                                      -> {"predictions": [{"caption": ..., "tokens": [...], ...}, ...]}
                                      columnar: {"inputs": {"image_bytes": [{"b64": "..."}, ...]}}
                                      -> {"outputs": {"caption": [...], "tokens": [...], ...}}

    GET  /                            a page: drop a photo, read its captions, point at a word to see
                                      where the model looked (`sat_tf/serving/page/`, no build step)

So a client written against `tensorflow/serving` works unchanged. Built on Flask; in production
run the real TF Serving container on the same export (see the README). Bad requests (invalid
JSON, not base64, not an image, too large, wrong shape) get HTTP 400 with {"error": "..."}, and
the server keeps serving. Concurrent requests are batched into one graph call
(`batching.RequestBatcher`; as with TF Serving's batching, a request's tokens, log_probs and
alphas are padded to the longest caption of its graph call); when the queue is full a request
gets HTTP 503 at once. Images follow the one image contract (`sat_tf_edge.images`): the server
applies the EXIF orientation before the graph sees the bytes, and converts formats the graph
cannot decode (TIFF, WebP, ...) to PNG.
"""

from __future__ import annotations

import base64
import binascii
import os
from importlib import resources
from pathlib import Path

import numpy as np
import tensorflow as tf
from flask import Flask, Response, jsonify, request
from sat_tf_edge.images import ImageDecodeError, graph_ready_bytes

from sat_tf.errors import SatTfError
from sat_tf.serving.batching import QueueFullError, RequestBatcher

MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_INSTANCES = 64


class BadRequest(ValueError):
    """A client error: reported as HTTP 400."""


class ModelDirectoryError(SatTfError, FileNotFoundError):
    """The folder to serve holds no SavedModel in TF Serving's layout."""


def latest_version(model_base: Path) -> tuple[int, Path]:
    if not model_base.is_dir():
        raise ModelDirectoryError(f"{model_base}: model folder not found")
    versions = [int(p.name) for p in model_base.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise ModelDirectoryError(f"{model_base}: no numbered version folder (TF Serving layout <name>/<version>/)")
    return max(versions), model_base / str(max(versions))


def _image_bytes(instance, index: int) -> bytes:
    """One instance -> image bytes the graph decodes under the image contract (EXIF orientation
    applied here, since the graph's decoder ignores it); accepts {"b64": ...} or
    {"image_bytes": {"b64": ...}}."""
    if isinstance(instance, dict) and "image_bytes" in instance:
        instance = instance["image_bytes"]
    if not isinstance(instance, dict) or not isinstance(instance.get("b64"), str):
        raise BadRequest(f'instances[{index}]: expected {{"b64": "<base64 image>"}}')
    try:
        data = base64.b64decode(instance["b64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"instances[{index}]: not valid base64 ({exc})") from exc
    try:
        return graph_ready_bytes(data)
    except ImageDecodeError as exc:
        raise BadRequest(f"instances[{index}]: not a decodable image ({exc.reason})") from None


def _request_instances(payload: dict) -> tuple[list, bool]:
    """The instances of a request in TF Serving's row format ({"instances": [...]}) or columnar
    format ({"inputs": {"image_bytes": [...]}} or {"inputs": [...]}); and whether it was columnar."""
    if "instances" in payload and "inputs" in payload:
        raise BadRequest('give either "instances" (row format) or "inputs" (columnar format), not both')
    if "inputs" in payload:
        inputs = payload["inputs"]
        if isinstance(inputs, dict):
            if set(inputs) != {"image_bytes"}:
                raise BadRequest(f'"inputs" must have exactly the input "image_bytes", got {sorted(inputs)[:5]}')
            inputs = inputs["image_bytes"]
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest('expected "inputs": {"image_bytes": [{"b64": ...}, ...]} with at least one image')
        return inputs, True
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequest('expected a non-empty "instances" list (or the columnar "inputs")')
    return instances, False


def _to_json(columns: dict[str, np.ndarray]) -> list[dict]:
    batch = len(next(iter(columns.values())))
    return [{key: _json_value(value[i]) for key, value in columns.items()} for i in range(batch)]


def _json_value(item):
    if isinstance(item, bytes):
        return item.decode("utf-8")
    value = np.asarray(item)
    if value.dtype == object:  # strings, for example the k-best candidates
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value.tolist()]
    return value.tolist()


PAGE_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}


def _page_file(name: str) -> bytes:
    return (resources.files("sat_tf.serving") / "page" / name).read_bytes()


def create_app(model_dir: str | os.PathLike, model_name: str | None = None, max_batch_size: int = 16,
               batch_timeout_ms: float = 5.0, max_queued_requests: int = 64, num_batch_threads: int = 2) -> Flask:
    """The Flask app serving `<model_dir>` (a TF Serving base path `<name>/` or a version folder).

    Args:
        model_dir: the exported model (`sat-tf export`).
        model_name: the name in the URLs (default: the folder's).
        max_batch_size, batch_timeout_ms, max_queued_requests, num_batch_threads: request
            batching (see `batching.RequestBatcher`); max_batch_size=1 runs requests one at a time.
    """
    model_dir = Path(model_dir)
    if (model_dir / "saved_model.pb").is_file():
        version, version_dir = int(model_dir.name) if model_dir.name.isdigit() else 1, model_dir
        name = model_name or model_dir.parent.name
    else:
        version, version_dir = latest_version(model_dir)
        name = model_name or model_dir.name
    served = tf.saved_model.load(str(version_dir))
    signatures = dict(served.signatures)

    def run_batch(signature_name: str, images) -> dict[str, np.ndarray]:
        outputs = signatures[signature_name](image_bytes=tf.constant(list(images)))
        return {key: value.numpy() for key, value in outputs.items()}

    # Worker threads run the graph on batches of requests (TF parallelises inside a call too).
    batcher = RequestBatcher(run_batch, max_batch_size, batch_timeout_ms, max_queued_requests, num_batch_threads)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.extensions["sat_tf_batcher"] = batcher

    @app.get("/")
    @app.get("/<any(page.js, page.css):filename>")
    def page(filename: str = "index.html"):
        return Response(_page_file(filename), mimetype=PAGE_FILES[filename])

    @app.get("/page-config.json")
    def page_config():
        return jsonify({"model": name, "max_request_bytes": MAX_REQUEST_BYTES,
                        "signature": "beam_search" if "beam_search" in signatures else "serving_default"})

    def error(message: str, status: int = 400):
        return jsonify({"error": message}), status

    @app.get(f"/v1/models/{name}")
    @app.get(f"/v1/models/{name}/versions/<int:_version>")
    def model_status(_version=None):
        return jsonify({"model_version_status": [
            {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})

    @app.get(f"/v1/models/{name}/metadata")
    def metadata():
        described = {
            key: {"inputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()}
                             for k, v in fn.structured_input_signature[1].items()},
                  "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()}
                              for k, v in fn.structured_outputs.items()}}
            for key, fn in signatures.items()
        }
        return jsonify({"model_spec": {"name": name, "version": str(version)},
                        "metadata": {"signature_def": described}})

    @app.post(f"/v1/models/{name}:predict")
    @app.post(f"/v1/models/{name}/versions/<int:_version>:predict")
    def predict(_version=None):
        try:
            payload = request.get_json(force=True, silent=True)  # TF Serving ignores Content-Type
        except RecursionError:
            return error("request JSON is nested too deeply")
        if not isinstance(payload, dict):
            return error("request body must be a JSON object")
        signature_name = payload.get("signature_name", "serving_default")
        if signature_name not in signatures or signature_name == "caption_images":
            image_signatures = sorted(s for s in signatures if s != "caption_images")
            return error(f"unknown signature_name '{signature_name}' (image-bytes signatures: {image_signatures})")
        try:
            instances, columnar = _request_instances(payload)
            if len(instances) > MAX_INSTANCES:
                raise BadRequest(f"at most {MAX_INSTANCES} instances per request, got {len(instances)}")
            images = [_image_bytes(instance, i) for i, instance in enumerate(instances)]
            outputs = batcher.submit(signature_name, images)
        except BadRequest as exc:
            return error(str(exc))
        except QueueFullError as exc:
            response, status = error(str(exc), 503)
            response.headers["Retry-After"] = "1"
            return response, status
        except tf.errors.InvalidArgumentError as exc:
            return error(f"could not decode an image: {exc.message.splitlines()[0]}")
        rows = _to_json(outputs)
        if columnar:  # TF Serving answers the columnar format with columns
            return jsonify({"outputs": {key: [row[key] for row in rows] for key in rows[0]}})
        return jsonify({"predictions": rows})

    @app.errorhandler(413)
    def too_large(_exc):
        return error(f"request larger than {MAX_REQUEST_BYTES} bytes", 413)

    @app.errorhandler(404)
    def not_found(_exc):
        return error(f"not found; this server serves /v1/models/{name}", 404)

    return app


def serve(model_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8501, model_name: str | None = None,
          threads: int = 8, **batching) -> None:
    """Serves with waitress when installed (a production WSGI server), else Flask's threaded server.
    `batching`: `create_app`'s max_batch_size, batch_timeout_ms, max_queued_requests and
    num_batch_threads."""
    app = create_app(model_dir, model_name, **batching)
    try:
        from waitress import serve as waitress_serve
    except ImportError:
        app.run(host=host, port=port, threaded=True)
    else:
        waitress_serve(app, host=host, port=port, threads=threads)
