"""A local server with TensorFlow Serving's REST contract, for the exported SavedModel.

    GET  /v1/models/<name>[/versions/<v>]            -> model status {"model_version_status": [...]}
    GET  /v1/models/<name>[/versions/<v>]/metadata   -> the signatures, in TF Serving's SignatureDef JSON
    POST /v1/models/<name>[/versions/<v>]:predict    {"instances": [{"b64": "..."}, ...]}  (or
                                      {"signature_name": ..., "instances": [{"image_bytes": {"b64": "..."}}]})
                                      -> {"predictions": [{"caption": ..., "tokens": [...], ...}, ...]}
                                      columnar: {"inputs": {"image_bytes": [{"b64": "..."}, ...]}}
                                      -> {"outputs": {"caption": [...], "tokens": [...], ...}}

    GET  /                            a page: drop a photo, read its captions, point at a word to see
                                      where the model looked (`sat_tf/serving/page/`, no build step)

So a client written against `tensorflow/serving` works unchanged: another version than the one
served, or a version label, is a 404 as in TF Serving. Built on Flask; in production run the real
TF Serving container on the same export (see the README).

Every answer is JSON. Client errors (invalid JSON, not base64, not an image, too many pixels, too
large, wrong shape, wrong method) get a 4xx with {"error": "..."}; overload gets 503 with
`Retry-After`; only a real internal fault gives a 500, logged with its traceback and answered
without it. Work per request is bounded (`ServingLimits`): the pixel limit is checked from the
image header before decoding, image checks run in a small worker pool under a deadline, and a
request is admitted only while fewer than `max_in_flight` are being served, so a flood gets fast
503s instead of waiting. Concurrent requests are batched into one graph call
(`batching.RequestBatcher`; as with TF Serving's batching, a request's tokens, log_probs and alphas
are padded to the longest caption of its graph call). Images follow the one image contract
(`sat_tf_edge.images`): the server applies the EXIF orientation before the graph sees the bytes,
and converts formats the graph cannot decode (TIFF, WebP, ...) to PNG.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import logging
import os
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
import tensorflow as tf
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sat_tf.errors import SatTfError
from sat_tf.export.serving_settings import serving_settings
from sat_tf.serving.batching import QueueFullError, RequestBatcher
from sat_tf.serving.limits import ServingLimits
from sat_tf_edge.images import ImageDecodeError, graph_ready_bytes, refuse_declared_oversize

MAX_INSTANCES = 64
ACCESS_LOG = logging.getLogger("sat_tf.serving.access")
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


class BadRequest(ValueError):
    """A client error: reported as HTTP 400."""


class RefusedForSize(BadRequest):
    """An image over the pixel limit: a 400 that `ServingLimits.refusal_delay_s` delays."""


class Overloaded(RuntimeError):
    """The server cannot take this request now: HTTP 503 with Retry-After."""


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


def _image_bytes(instance, index: int, max_pixels: int, size: int | None) -> bytes:
    """One instance -> image bytes the graph decodes to the image contract's pixels at the model's
    input `size` (`graph_ready_bytes`: the library's own decoding, so served captions are the
    library's); accepts {"b64": ...} or {"image_bytes": {"b64": ...}}."""
    text = _base64_of(instance)
    if text is None:
        raise BadRequest(f'instances[{index}]: expected {{"b64": "<base64 image>"}}')
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"instances[{index}]: not valid base64 ({exc})") from exc
    try:
        return graph_ready_bytes(data, max_pixels=max_pixels, size=size)
    except ImageDecodeError as exc:
        refusal = RefusedForSize if "pixel limit" in exc.reason else BadRequest
        raise refusal(f"instances[{index}]: not a decodable image ({exc.reason})") from None


HEADER_CHARACTERS = 8192  # base64 characters read to check a declared size (6 KB: any PNG/GIF/BMP header)


def _refuse_declared_oversize(instance, index: int, max_pixels: int) -> None:
    """400 at once when an instance's first bytes declare more than `max_pixels`, before its
    whole base64 is decoded or a worker is involved (floods of huge images stay cheap). Anything
    else (malformed base64, a header cut short) is left to the full check in `_image_bytes`."""
    text = _base64_of(instance)
    if text is None:
        return
    prefix = text[:HEADER_CHARACTERS]
    try:
        header = base64.b64decode(prefix[: len(prefix) - len(prefix) % 4])
    except (binascii.Error, ValueError):
        return
    try:
        refuse_declared_oversize(header, max_pixels)
    except ImageDecodeError as exc:
        raise RefusedForSize(f"instances[{index}]: not a decodable image ({exc.reason})") from None


def _base64_of(instance) -> str | None:
    """The base64 text of {"b64": ...} or {"image_bytes": {"b64": ...}}, else None."""
    if isinstance(instance, dict) and "image_bytes" in instance:
        instance = instance["image_bytes"]
    text = instance.get("b64") if isinstance(instance, dict) else None
    return text if isinstance(text, str) else None


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


PAGE_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}


def _page_file(name: str) -> bytes:
    return (resources.files("sat_tf.serving") / "page" / name).read_bytes()


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


def create_app(
    model_dir: str | os.PathLike,
    model_name: str | None = None,
    max_batch_size: int = 16,
    batch_timeout_ms: float = 5.0,
    max_queued_requests: int = 32,
    num_batch_threads: int = 2,
    limits: ServingLimits | None = None,
    load_in_background: bool = False,
) -> Flask:
    """The Flask app serving `<model_dir>` (a TF Serving base path `<name>/` or a version folder).

    Args:
        model_dir: the exported model (`sat-tf export`).
        model_name: the name in the URLs (default: the folder's).
        max_batch_size, batch_timeout_ms, max_queued_requests, num_batch_threads: request
            batching (see `batching.RequestBatcher`); max_batch_size=1 runs requests one at a time.
        limits: the bounds on each request and on requests in flight (`ServingLimits`).
        load_in_background: return at once and load the model in a thread; until it is loaded the
            status says LOADING and predictions get 503.

    Example:
        >>> app = create_app("serving/sat_tf")
        >>> app.test_client().get("/v1/models/sat_tf").get_json()["model_version_status"][0]["state"]
        'AVAILABLE'
    """
    limits = limits or ServingLimits()
    name, version, version_dir = resolve_model_dir(model_dir, model_name)
    model = ServedModel(version_dir, background=load_in_background)
    settings = serving_settings(version_dir)
    # Worker threads run the graph on batches of requests (TF parallelises inside a call too).
    batcher = RequestBatcher(model.run_batch, max_batch_size, batch_timeout_ms, max_queued_requests, num_batch_threads)
    image_pool = concurrent.futures.ThreadPoolExecutor(limits.image_workers, thread_name_prefix="sat_tf-images")
    admitted = threading.BoundedSemaphore(limits.max_in_flight)
    delaying = threading.BoundedSemaphore(limits.delayed_refusals) if limits.delayed_refusals else None

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = limits.max_request_bytes
    app.extensions.update(
        sat_tf_batcher=batcher, sat_tf_model=model, sat_tf_limits=limits, sat_tf_identity=(name, version)
    )
    base = f"/v1/models/{name}"

    def error(message: str, status: int = 400, retry_after: bool = False):
        response = jsonify({"error": message})
        response.status_code = status
        if retry_after:
            response.headers["Retry-After"] = "1"
        return response

    def delay_refusal() -> None:
        """Holds a refusal for its size `refusal_delay_s` (in a WSGI thread, with no admission slot
        and no CPU), unless `delayed_refusals` are already waiting."""
        if limits.refusal_delay_s > 0 and delaying is not None and delaying.acquire(blocking=False):
            try:
                time.sleep(limits.refusal_delay_s)
            finally:
                delaying.release()

    def check_version(requested: int | None):
        if requested is not None and requested != version:
            return error(f"Servable not found for request: Specific({name}, {requested})", 404)
        return None

    @app.before_request
    def start_clock():
        g.started, g.batch_size = time.perf_counter(), None

    @app.after_request
    def access_log(response):
        latency = 1000 * (time.perf_counter() - g.get("started", time.perf_counter()))
        ACCESS_LOG.info(
            "%s %s %d %.1fms batch=%s",
            request.method,
            request.path,
            response.status_code,
            latency,
            g.get("batch_size") or "-",
        )
        return response

    @app.get("/")
    @app.get("/<any(page.js, page.css):filename>")
    def page(filename: str = "index.html"):
        return Response(_page_file(filename), mimetype=PAGE_FILES[filename])

    @app.get("/page-config.json")
    def page_config():
        signatures = model.image_signatures()
        return jsonify(
            {
                "model": name,
                "max_request_bytes": limits.max_request_bytes,
                "max_image_pixels": limits.max_image_pixels,
                "not_sure_below": settings["not_sure_below"],
                "signature": "beam_search" if "beam_search" in signatures else "serving_default",
            }
        )

    @app.get(base)
    @app.get(f"{base}/versions/<int:requested>")
    def model_status(requested: int | None = None):
        if (missing := check_version(requested)) is not None:
            return missing
        code = "OK" if model.state != "END" else "UNKNOWN"
        return jsonify(
            {
                "model_version_status": [
                    {
                        "version": str(version),
                        "state": model.state,
                        "status": {"error_code": code, "error_message": model.error},
                    }
                ]
            }
        )

    @app.get(f"{base}/metadata")
    @app.get(f"{base}/versions/<int:requested>/metadata")
    def metadata(requested: int | None = None):
        if (missing := check_version(requested)) is not None:
            return missing
        if model.state != "AVAILABLE":
            return error(f"model {name} is {model.state.lower()}", 503, retry_after=True)
        return jsonify(
            {
                "model_spec": {"name": name, "signature_name": "", "version": str(version)},
                "metadata": {"signature_def": signature_metadata(model.signatures)},
            }
        )

    @app.route(f"{base}/labels/<label>", methods=["GET", "POST"])
    @app.route(f"{base}/labels/<label>/metadata", methods=["GET"])
    @app.post(f"{base}/labels/<label>:predict")
    def by_label(label: str):
        return error(f"Unrecognized servable version label: {label}", 404)

    @app.post(f"{base}:predict")
    @app.post(f"{base}/versions/<int:requested>:predict")
    def predict(requested: int | None = None):
        if (missing := check_version(requested)) is not None:
            return missing
        if model.state != "AVAILABLE":
            status = 503 if model.state == "LOADING" else 500
            return error(f"model {name} is {model.state.lower()}", status, retry_after=status == 503)
        if not admitted.acquire(blocking=False):
            return error(
                f"server busy: {limits.max_in_flight} requests in flight (max_in_flight); retry later",
                503,
                retry_after=True,
            )
        try:
            response = predict_admitted()
        finally:
            admitted.release()
        if g.get("refused_for_size"):
            delay_refusal()
        return response

    def predict_admitted():
        deadline = time.monotonic() + limits.request_timeout_s
        try:
            payload = request.get_json(force=True, silent=True)  # TF Serving ignores Content-Type
        except RecursionError:
            return error("request JSON is nested too deeply")
        if not isinstance(payload, dict):
            return error("request body must be a JSON object")
        signature_name = payload.get("signature_name", "serving_default")
        if not isinstance(signature_name, str) or signature_name not in model.image_signatures():
            shown = signature_name if isinstance(signature_name, str) else type(signature_name).__name__
            return error(f"unknown signature_name '{shown[:100]}' (image-bytes signatures: {model.image_signatures()})")
        try:
            instances, columnar = _request_instances(payload)
            if len(instances) > MAX_INSTANCES:
                raise BadRequest(f"at most {MAX_INSTANCES} instances per request, got {len(instances)}")
            images = checked_images(instances, deadline)
            outputs, g.batch_size = batcher.run(signature_name, images)
        except RefusedForSize as exc:
            g.refused_for_size = True
            return error(str(exc))
        except BadRequest as exc:
            return error(str(exc))
        except (QueueFullError, Overloaded) as exc:
            return error(str(exc), 503, retry_after=True)
        except tf.errors.InvalidArgumentError as exc:
            return error(f"could not decode an image: {exc.message.splitlines()[0]}")
        rows = _to_json(outputs)
        if columnar:  # TF Serving answers the columnar format with columns
            return jsonify({"outputs": {key: [row[key] for row in rows] for key in rows[0]}})
        return jsonify({"predictions": rows})

    def checked_images(instances: list, deadline: float) -> list[bytes]:
        """Each instance checked and made graph-ready in the bounded pool, within the deadline."""
        for index, instance in enumerate(instances):
            _refuse_declared_oversize(instance, index, limits.max_image_pixels)
        futures = [
            image_pool.submit(_image_bytes, instance, i, limits.max_image_pixels, model.image_size)
            for i, instance in enumerate(instances)
        ]
        try:
            return [future.result(timeout=max(0.0, deadline - time.monotonic())) for future in futures]
        except concurrent.futures.TimeoutError:
            for future in futures:
                future.cancel()
            raise Overloaded(
                f"images not checked within the {limits.request_timeout_s:g} s deadline (server busy); retry later"
            ) from None

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            delay_refusal()
            return error(f"request larger than {limits.max_request_bytes} bytes", 413)
        if exc.code == 404:
            return error(f"not found: {request.path[:200]}; this server serves {base}", 404)
        response = error(exc.description or exc.name, exc.code or 500)
        allowed = getattr(exc, "valid_methods", None)  # MethodNotAllowed's
        if exc.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        ERROR_LOG.error("internal error on %s %s", request.method, request.path, exc_info=exc)
        return error("internal server error (logged by the server)", 500)

    return app


def _log_to_stderr(logger: logging.Logger) -> None:
    """One timestamped line per record of `logger` (and its children) on stderr, unless the
    application configured logging itself."""
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a root handler added later (by a library) would print each line twice


def serve(
    model_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8501,
    model_name: str | None = None,
    limits: ServingLimits | None = None,
    announce=print,
    **batching,
) -> None:
    """Serves with waitress (a production WSGI server) on `limits.wsgi_threads` threads, so a
    refused request never waits for one. The port answers at once (status LOADING,
    predictions 503) and `announce` reports the URL once the model is loaded.
    `batching`: `create_app`'s max_batch_size, batch_timeout_ms, max_queued_requests and
    num_batch_threads."""
    from waitress import serve as waitress_serve

    limits = limits or ServingLimits()
    app = create_app(model_dir, model_name, limits=limits, load_in_background=True, **batching)
    name, version = app.extensions["sat_tf_identity"]
    model = app.extensions["sat_tf_model"]

    def announce_when_loaded():
        model.loaded.wait()
        if model.state == "AVAILABLE":
            announce(
                f"serving model '{name}' version {version} at http://{host}:{port}/v1/models/{name} "
                f"(page: http://{host}:{port}/)",
                flush=True,
            )
        else:
            announce(f"error: {model.error}", flush=True)

    threading.Thread(target=announce_when_loaded, daemon=True).start()
    # waitress reports each queued task when all threads are busy; the access log says enough.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    _log_to_stderr(ERROR_LOG)  # the parent of ACCESS_LOG
    threads = limits.wsgi_threads
    waitress_serve(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=max(100, 4 * threads),
        channel_timeout=60,
        ident="sat_tf",
    )
