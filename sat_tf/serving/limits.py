"""The bounds `sat-tf serve` puts on each request and on requests in flight (no TensorFlow import,
so the command line can show the defaults without loading it)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    """What one request may cost and how many are served at once.

    Args:
        max_request_bytes: largest request body (HTTP 413 beyond).
        max_image_pixels: largest image, width x height, read from its header before decoding
            (400 beyond). The model sees 224-448 px, so 16 MP (a 12 MP phone photo fits) is plenty.
        image_workers: threads that check and decode request images (bounds that work at once).
        request_timeout_s: deadline for a request's image checks and its place in a batch (503
            beyond; the graph call a request joined is not interrupted).
        max_in_flight: requests admitted at once (checking images, queued or in a graph call);
            more get 503 with Retry-After at once. `serve` runs this many WSGI threads plus
            `spare_threads`, so refusals never wait for a thread.
        spare_threads: WSGI threads beyond `max_in_flight`, for refusals, status and the page.
        refusal_delay_s: a request refused for its size (an image over `max_image_pixels`, a body
            over `max_request_bytes`) gets its 400/413 after this delay, so a client that loops on
            huge images sends a few a second instead of hundreds, and the CPU it would have cost
            goes to the other clients (0: answer at once).
        delayed_refusals: at most this many refusals wait out the delay at once (each holds a
            WSGI thread, not a CPU); beyond, they are answered at once.
    """

    max_request_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 16_000_000
    image_workers: int = 2
    request_timeout_s: float = 30.0
    max_in_flight: int = 48
    spare_threads: int = 4
    refusal_delay_s: float = 0.5
    delayed_refusals: int = 8

    @property
    def wsgi_threads(self) -> int:
        """The WSGI server's threads: admitted requests, delayed refusals, and spares, so that a
        refusal never waits for a thread."""
        return self.max_in_flight + self.delayed_refusals + self.spare_threads

    def __post_init__(self):
        for name in ("max_request_bytes", "max_image_pixels", "image_workers", "max_in_flight", "spare_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if self.refusal_delay_s < 0 or self.delayed_refusals < 0:
            raise ValueError("refusal_delay_s and delayed_refusals must be >= 0")
