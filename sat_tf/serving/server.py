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

import concurrent.futures
import logging
import os
import threading
import time

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from sat_tf.export.serving_settings import serving_settings
from sat_tf.serving.batching import RequestBatcher
from sat_tf.serving.context import ServingContext, error_response, serving_context
from sat_tf.serving.limits import ServingLimits
from sat_tf.serving.model import ERROR_LOG, ModelDirectoryError, ServedModel, resolve_model_dir
from sat_tf.serving.page_routes import page
from sat_tf.serving.rest_api import tf_serving_api

__all__ = ["ModelDirectoryError", "create_app", "serve"]
ACCESS_LOG = logging.getLogger("sat_tf.serving.access")


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
    # Worker threads run the graph on batches of requests (TF parallelises inside a call too).
    batcher = RequestBatcher(model.run_batch, max_batch_size, batch_timeout_ms, max_queued_requests, num_batch_threads)
    context = ServingContext(
        name=name,
        version=version,
        model=model,
        settings=serving_settings(version_dir),
        batcher=batcher,
        limits=limits,
        image_pool=concurrent.futures.ThreadPoolExecutor(limits.image_workers, thread_name_prefix="sat_tf-images"),
        admitted=threading.BoundedSemaphore(limits.max_in_flight),
        delaying=threading.BoundedSemaphore(limits.delayed_refusals) if limits.delayed_refusals else None,
    )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = limits.max_request_bytes
    app.extensions.update(sat_tf=context, sat_tf_batcher=batcher, sat_tf_model=model, sat_tf_identity=(name, version))
    app.register_blueprint(page)
    app.register_blueprint(tf_serving_api(name))
    app.before_request(_start_clock)
    app.after_request(_access_log)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
    return app


def _start_clock():
    g.started, g.batch_size = time.perf_counter(), None


def _access_log(response):
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


def _http_error(exc: HTTPException):
    """Flask's own errors (413, 404, 405, ...) answered as JSON like every other error."""
    context = serving_context()
    if exc.code == 413:
        context.delay_refusal()
        return error_response(f"request larger than {context.limits.max_request_bytes} bytes", 413)
    if exc.code == 404:
        return error_response(f"not found: {request.path[:200]}; this server serves {context.base}", 404)
    response = error_response(exc.description or exc.name, exc.code or 500)
    allowed = getattr(exc, "valid_methods", None)  # MethodNotAllowed's
    if exc.code == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _internal_error(exc: Exception):
    ERROR_LOG.error("internal error on %s %s", request.method, request.path, exc_info=exc)
    return error_response("internal server error (logged by the server)", 500)


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
