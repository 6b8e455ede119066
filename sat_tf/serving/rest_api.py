"""TensorFlow Serving's REST API for one model (a Blueprint under `/v1/models/<name>`): status,
metadata, predict, and TF Serving's 404 for version labels. See `sat_tf.serving.server` for the
contract."""

from __future__ import annotations

import time

import tensorflow as tf
from flask import Blueprint, g, jsonify, request

from sat_tf.serving.batching import QueueFullError
from sat_tf.serving.context import ServingContext, error_response, serving_context
from sat_tf.serving.instances import (
    MAX_INSTANCES,
    BadRequest,
    Overloaded,
    RefusedForSize,
    request_instances,
    to_json_rows,
)
from sat_tf.serving.model import signature_metadata


def tf_serving_api(name: str) -> Blueprint:
    """The routes of model `name` (a Blueprint per app: the model's name is in the URLs)."""
    api = Blueprint("tf_serving", __name__)
    base = f"/v1/models/{name}"  # not a url_prefix: Flask would put a "/" before ":predict"
    for rule, view, methods in (
        ("", model_status, ["GET"]),
        ("/versions/<int:requested>", model_status, ["GET"]),
        ("/metadata", metadata, ["GET"]),
        ("/versions/<int:requested>/metadata", metadata, ["GET"]),
        ("/labels/<label>", by_label, ["GET", "POST"]),
        ("/labels/<label>/metadata", by_label, ["GET"]),
        ("/labels/<label>:predict", by_label, ["POST"]),
        (":predict", predict, ["POST"]),
        ("/versions/<int:requested>:predict", predict, ["POST"]),
    ):
        api.add_url_rule(base + rule, view_func=view, methods=methods)
    return api


def model_status(requested: int | None = None):
    context = serving_context()
    if (missing := context.version_missing(requested)) is not None:
        return missing
    model = context.model
    code = "OK" if model.state != "END" else "UNKNOWN"
    return jsonify(
        {
            "model_version_status": [
                {
                    "version": str(context.version),
                    "state": model.state,
                    "status": {"error_code": code, "error_message": model.error},
                }
            ]
        }
    )


def metadata(requested: int | None = None):
    context = serving_context()
    if (missing := context.version_missing(requested)) is not None:
        return missing
    if context.model.state != "AVAILABLE":
        return error_response(f"model {context.name} is {context.model.state.lower()}", 503, retry_after=True)
    return jsonify(
        {
            "model_spec": {"name": context.name, "signature_name": "", "version": str(context.version)},
            "metadata": {"signature_def": signature_metadata(context.model.signatures)},
        }
    )


def by_label(label: str):
    return error_response(f"Unrecognized servable version label: {label}", 404)


def predict(requested: int | None = None):
    """Admits the request (or answers 503 at once), predicts, and holds a refusal for its size."""
    context = serving_context()
    if (missing := context.version_missing(requested)) is not None:
        return missing
    state = context.model.state
    if state != "AVAILABLE":
        status = 503 if state == "LOADING" else 500
        return error_response(f"model {context.name} is {state.lower()}", status, retry_after=status == 503)
    if not context.admitted.acquire(blocking=False):
        return error_response(
            f"server busy: {context.limits.max_in_flight} requests in flight (max_in_flight); retry later",
            503,
            retry_after=True,
        )
    try:
        response = _predict_admitted(context)
    finally:
        context.admitted.release()
    if g.get("refused_for_size"):
        context.delay_refusal()
    return response


def _predict_admitted(context: ServingContext):
    deadline = time.monotonic() + context.limits.request_timeout_s
    try:
        payload = request.get_json(force=True, silent=True)  # TF Serving ignores Content-Type
    except RecursionError:
        return error_response("request JSON is nested too deeply")
    if not isinstance(payload, dict):
        return error_response("request body must be a JSON object")
    signatures = context.model.image_signatures()
    signature_name = payload.get("signature_name", "serving_default")
    if not isinstance(signature_name, str) or signature_name not in signatures:
        shown = signature_name if isinstance(signature_name, str) else type(signature_name).__name__
        return error_response(f"unknown signature_name '{shown[:100]}' (image-bytes signatures: {signatures})")
    try:
        instances, columnar = request_instances(payload)
        if len(instances) > MAX_INSTANCES:
            raise BadRequest(f"at most {MAX_INSTANCES} instances per request, got {len(instances)}")
        images = context.checked_images(instances, deadline)
        outputs, g.batch_size = context.batcher.run(signature_name, images)
    except RefusedForSize as exc:
        g.refused_for_size = True
        return error_response(str(exc))
    except BadRequest as exc:
        return error_response(str(exc))
    except (QueueFullError, Overloaded) as exc:
        return error_response(str(exc), 503, retry_after=True)
    except tf.errors.InvalidArgumentError as exc:
        return error_response(f"could not decode an image: {exc.message.splitlines()[0]}")
    rows = to_json_rows(outputs)
    if columnar:  # TF Serving answers the columnar format with columns
        return jsonify({"outputs": {key: [row[key] for row in rows] for key in rows[0]}})
    return jsonify({"predictions": rows})
