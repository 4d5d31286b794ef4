"""Back-pressure: a bounded number of in-flight model requests and a bounded queue; beyond it, 503 + Retry-After.

Requests that would wait beyond the queue limit, or longer than the queue timeout, are answered at once
instead of piling up threads and memory. Under gunicorn's threads this also serialises model calls to
``max_in_flight`` at a time (one by default: on a CPU a single call already uses every core).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g, request

from prelabel.core.errors import PrelabelError, Unavailable


class Overloaded(Unavailable):
    """The model queue is full or the wait too long: answered with 503 and ``Retry-After``."""


class ModelGate:
    """At most ``max_in_flight`` holders at once and at most ``max_queue`` waiting for a turn."""

    def __init__(self, max_in_flight: int = 1, max_queue: int = 16, queue_timeout_s: float = 30.0) -> None:
        if max_in_flight < 1 or max_queue < 0:
            raise PrelabelError("max_in_flight must be >= 1 and max_queue >= 0")
        self.max_in_flight, self.max_queue, self.queue_timeout_s = max_in_flight, max_queue, queue_timeout_s
        self._slots = threading.Semaphore(max_in_flight)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.waiting = 0
        self.rejected = 0
        self._mean_s = 1.0  # exponentially weighted mean of a holder's time, for Retry-After

    def retry_after_s(self) -> int:
        """Seconds until the queue ahead has likely drained."""
        return max(1, math.ceil(self._mean_s * (self.waiting + 1) / self.max_in_flight))

    def _reject(self, why: str) -> Overloaded:
        with self._lock:
            self.rejected += 1
        return Overloaded(f"the server is busy ({why}); retry later", self.retry_after_s())

    def acquire(self) -> float:
        """Wait for a turn (raise :class:`Overloaded` when the queue is full or the wait too long)."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                full = self.waiting >= self.max_queue
                self.waiting += 0 if full else 1
            if full:
                raise self._reject(f"{self.max_queue} requests already waiting")
            try:
                acquired = self._slots.acquire(timeout=self.queue_timeout_s)
            finally:
                with self._lock:
                    self.waiting -= 1
            if not acquired:
                raise self._reject(f"no model slot within {self.queue_timeout_s} s")
        with self._lock:
            self.in_flight += 1
        return time.monotonic()

    def release(self, started: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - started)
        self._slots.release()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """A turn for background work: it waits as long as needed and is never rejected."""
        self._slots.acquire()
        with self._lock:
            self.in_flight += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.release(started)


def install_limits(app: Flask, gate: ModelGate, model_endpoints: frozenset[str]) -> None:
    """Requests to ``model_endpoints`` (Flask endpoint names) take a turn from ``gate`` for their whole handling."""

    @app.before_request
    def take_turn() -> None:
        if request.endpoint in model_endpoints:
            g.prelabel_turn = gate.acquire()

    @app.teardown_request
    def give_turn(_exc: BaseException | None) -> None:
        started = g.pop("prelabel_turn", None)
        if started is not None:
            gate.release(started)
