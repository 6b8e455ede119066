"""A predict request's images, in TF Serving's formats: reading the instances (row or columnar),
checking each image against the image contract and the pixel limit, and turning the outputs into
JSON rows. Client mistakes raise `BadRequest` (HTTP 400)."""

from __future__ import annotations

import base64
import binascii

import numpy as np

from sat_tf_edge.images import ImageDecodeError, graph_ready_bytes, refuse_declared_oversize

MAX_INSTANCES = 64


class BadRequest(ValueError):
    """A client error: reported as HTTP 400."""


class RefusedForSize(BadRequest):
    """An image over the pixel limit: a 400 that `ServingLimits.refusal_delay_s` delays."""


class Overloaded(RuntimeError):
    """The server cannot take this request now: HTTP 503 with Retry-After."""


def graph_ready_instance(instance, index: int, max_pixels: int, size: int | None) -> bytes:
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


def refuse_oversized_instance(instance, index: int, max_pixels: int) -> None:
    """400 at once when an instance's first bytes declare more than `max_pixels`, before its
    whole base64 is decoded or a worker is involved (floods of huge images stay cheap). Anything
    else (malformed base64, a header cut short) is left to the full check in `graph_ready_instance`."""
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


def request_instances(payload: dict) -> tuple[list, bool]:
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


def to_json_rows(columns: dict[str, np.ndarray]) -> list[dict]:
    batch = len(next(iter(columns.values())))
    return [{key: _json_value(value[i]) for key, value in columns.items()} for i in range(batch)]


def _json_value(item):
    if isinstance(item, bytes):
        return item.decode("utf-8")
    value = np.asarray(item)
    if value.dtype == object:  # strings, for example the k-best candidates
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value.tolist()]
    return value.tolist()
