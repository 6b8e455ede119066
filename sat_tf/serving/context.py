"""What every route of one served model shares: the model, its batcher, the limits and the pools
that enforce them, and the JSON error answer. `create_app` builds one and keeps it in
`app.extensions["sat_tf"]`; the routes read it with `serving_context()`."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time

from flask import current_app, jsonify

from sat_tf.serving.batching import RequestBatcher
from sat_tf.serving.instances import Overloaded, graph_ready_instance, refuse_oversized_instance
from sat_tf.serving.limits import ServingLimits
from sat_tf.serving.model import ServedModel


def error_response(message: str, status: int = 400, retry_after: bool = False):
    """Every error answer: JSON {"error": message}, with Retry-After on overload."""
    response = jsonify({"error": message})
    response.status_code = status
    if retry_after:
        response.headers["Retry-After"] = "1"
    return response


@dataclasses.dataclass
class ServingContext:
    """One served model and the means that bound the work per request (`ServingLimits`)."""

    name: str
    version: int
    model: ServedModel
    settings: dict  # the export's serving settings (the "not sure" threshold)
    batcher: RequestBatcher
    limits: ServingLimits
    image_pool: concurrent.futures.ThreadPoolExecutor
    admitted: threading.BoundedSemaphore  # requests in flight
    delaying: threading.BoundedSemaphore | None  # refusals held back at once

    @property
    def base(self) -> str:
        return f"/v1/models/{self.name}"

    def version_missing(self, requested: int | None):
        """The 404 TF Serving gives for another version than the one served, else None."""
        if requested is not None and requested != self.version:
            return error_response(f"Servable not found for request: Specific({self.name}, {requested})", 404)
        return None

    def delay_refusal(self) -> None:
        """Holds a refusal for its size `refusal_delay_s` (in a WSGI thread, with no admission slot
        and no CPU), unless `delayed_refusals` are already waiting."""
        limits = self.limits
        if limits.refusal_delay_s > 0 and self.delaying is not None and self.delaying.acquire(blocking=False):
            try:
                time.sleep(limits.refusal_delay_s)
            finally:
                self.delaying.release()

    def checked_images(self, instances: list, deadline: float) -> list[bytes]:
        """Each instance checked and made graph-ready in the bounded pool, within the deadline."""
        limits = self.limits
        for index, instance in enumerate(instances):
            refuse_oversized_instance(instance, index, limits.max_image_pixels)
        futures = [
            self.image_pool.submit(graph_ready_instance, instance, i, limits.max_image_pixels, self.model.image_size)
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


def serving_context() -> ServingContext:
    """The context of the app handling the current request."""
    return current_app.extensions["sat_tf"]
