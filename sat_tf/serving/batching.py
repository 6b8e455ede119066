"""Batching of concurrent requests into one graph call, as TensorFlow Serving's batching does.

A request's images wait in a bounded queue; one worker thread takes the oldest request and adds
the requests behind it (same signature) until the batch holds `max_batch_size` images or
`batch_timeout_ms` has passed since it started waiting, runs the graph once and hands each request
its rows. A full queue refuses new requests at once (`QueueFullError`, HTTP 503) instead of
letting latency grow without bound.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Callable, Sequence

import numpy as np

from sat_tf.errors import SatTfError

# (signature name, image bytes) -> {output name: array with one row per image}
RunBatch = Callable[[str, Sequence[bytes]], dict[str, np.ndarray]]


class QueueFullError(SatTfError, RuntimeError):
    """The batching queue is full: the server is over capacity (HTTP 503)."""


@dataclasses.dataclass
class _Request:
    signature: str
    images: Sequence[bytes]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outputs: dict | None = None
    batch_size: int = 0  # images in the graph call it ran in
    error: BaseException | None = None


_STOP = object()  # queued by `close`


class RequestBatcher:
    """Runs requests in batches on one worker thread.

    Args:
        run_batch: runs one signature on a list of images and returns arrays with one row per image.
        max_batch_size: most images per graph call (a larger request runs alone).
        batch_timeout_ms: how long the oldest request waits for others to join its batch.
        max_queued_requests: requests waiting beyond this many are refused with `QueueFullError`.
        num_batch_threads: batches run at once (TF Serving's `num_batch_threads`): a second
            thread keeps the CPU busy while the other's graph call is in its sequential part.

    Example:
        >>> batcher = RequestBatcher(lambda name, images: signatures[name](image_bytes=images))
        >>> rows = batcher.submit("serving_default", [jpeg_bytes])   # blocks until its batch ran
        >>> batcher.close()
    """

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int = 16,
        batch_timeout_ms: float = 5.0,
        max_queued_requests: int = 64,
        num_batch_threads: int = 1,
    ):
        if min(max_batch_size, max_queued_requests, num_batch_threads) < 1 or batch_timeout_ms < 0:
            raise ValueError(
                "max_batch_size, max_queued_requests and num_batch_threads must be >= 1, batch_timeout_ms >= 0"
            )
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout_ms / 1000.0
        self.max_queued_requests = max_queued_requests
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued_requests)
        self._held = None  # taken from the queue but left for the next batch
        self._forming = threading.Lock()  # one worker forms a batch at a time
        self.batch_sizes: list[int] = []  # images per graph call, for monitoring and tests
        self._workers = [
            threading.Thread(target=self._work, name=f"sat_tf-batcher-{i}", daemon=True)
            for i in range(num_batch_threads)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def queued(self) -> int:
        """Requests waiting in the queue (not yet taken into a batch)."""
        return self._queue.qsize()

    def submit(self, signature: str, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Queues the images, waits for their batch and returns their output rows."""
        return self.run(signature, images)[0]

    def run(self, signature: str, images: Sequence[bytes]) -> tuple[dict[str, np.ndarray], int]:
        """`submit`, also returning how many images the graph call it joined held (for access logs)."""
        request = _Request(signature, list(images))
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise QueueFullError(
                f"server busy: {self.max_queued_requests} requests already queued (max_queued_requests); retry later"
            ) from None
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.outputs is not None  # a finished request holds its outputs or its error
        return request.outputs, request.batch_size

    def close(self) -> None:
        """Stops the worker after the queued requests (blocks until they are answered)."""
        for _ in self._workers:
            self._queue.put(_STOP)
        for worker in self._workers:
            worker.join()

    def _next_batch(self) -> list[_Request] | None:
        first = self._held if self._held is not None else self._queue.get()
        self._held = None
        if first is _STOP:
            return None
        batch, size = [first], len(first.images)
        deadline = time.monotonic() + self.batch_timeout
        while size < self.max_batch_size:
            try:
                candidate = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if (
                candidate is _STOP
                or candidate.signature != first.signature
                or size + len(candidate.images) > self.max_batch_size
            ):
                self._held = candidate  # first of the next batch
                break
            batch.append(candidate)
            size += len(candidate.images)
        return batch

    def _work(self) -> None:
        while True:
            with self._forming:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except Exception as exc:  # noqa: BLE001 - reported to the clients, the worker goes on
                if len(batch) == 1:
                    self._fail(batch[0], exc)
                    continue
                for request in batch:  # one bad request must not fail the others: each alone
                    try:
                        self._run([request])
                    except Exception as single_exc:  # noqa: BLE001
                        self._fail(request, single_exc)

    @staticmethod
    def _fail(request: _Request, exc: BaseException) -> None:
        request.error = exc
        request.done.set()

    def _run(self, batch: list[_Request]) -> None:
        images = [image for request in batch for image in request.images]
        outputs = self.run_batch(batch[0].signature, images)
        self.batch_sizes.append(len(images))
        start = 0
        for request in batch:
            count = len(request.images)
            request.outputs = {key: value[start : start + count] for key, value in outputs.items()}
            request.batch_size = len(images)
            start += count
            request.done.set()
