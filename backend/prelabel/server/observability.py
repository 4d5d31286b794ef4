"""Request ids, structured (JSON) logs, and Prometheus metrics at ``/metrics``.

Each request gets an id (the caller's ``X-Request-ID`` when it is sane, else a new one), echoed in the
response and attached to every log record written while it is handled. One access-log line per request
records method, path (never the query string, which may hold secrets), status and duration.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pythonjsonlogger.json import JsonFormatter

from prelabel.core.errors import PrelabelError
from prelabel.pipeline.labeler import Labeler
from prelabel.server.limits import ModelGate

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("prelabel.access")


def current_request_id() -> str:
    """The id of the request being served (``-`` outside a request)."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    """Root logging to stderr as one JSON object per line (``fmt="json"``) or plain text, with request ids."""
    if fmt not in ("json", "text"):
        raise PrelabelError(f"log_format must be 'json' or 'text', got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}{request_id}", style="{",
                                           rename_fields={"levelname": "level", "asctime": "time"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class _ModelCollector(Collector):
    """Model state and SAM embedding-cache counters, read from the live objects at scrape time."""

    def __init__(self, labeler: Callable[[], Labeler | None]) -> None:
        self._labeler = labeler

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labeler = self._labeler()
        yield GaugeMetricFamily("prelabel_model_ready", "1 when the models are loaded", value=float(bool(labeler)))
        # The model that encodes images for clicks: the segmenter, or SAM 3 (no segmenter; it clicks itself).
        segmenter = getattr(labeler, "segmenter", None) or getattr(labeler, "detector", None)
        cache = getattr(segmenter, "cache", None)
        if cache is None:
            return
        yield CounterMetricFamily("prelabel_image_encoder_runs", "image encoder runs, whatever triggered them",
                                  value=segmenter.encoder_calls)
        store = getattr(segmenter, "store", None)
        if store is not None:
            yield CounterMetricFamily("prelabel_embedding_store_hits", "embeddings read from the store",
                                      value=store.hits)
            yield CounterMetricFamily("prelabel_embedding_store_misses", "store lookups that found no usable entry",
                                      value=store.misses)
        hits, misses = cache.hits, cache.misses
        yield CounterMetricFamily("prelabel_embedding_cache_hits", "SAM embedding cache hits", value=hits)
        yield CounterMetricFamily("prelabel_embedding_cache_misses", "SAM embedding cache misses", value=misses)
        yield GaugeMetricFamily("prelabel_embedding_cache_hit_ratio", "hits / (hits + misses), 0 before any lookup",
                                value=hits / (hits + misses) if hits + misses else 0.0)
        yield GaugeMetricFamily("prelabel_embedding_cache_bytes", "bytes held by the cache", value=cache.used_bytes)


def install_observability(app: Flask, gate: ModelGate, labeler: Callable[[], Labeler | None]) -> CollectorRegistry:
    """Request ids, access logs and metrics for ``app``; serves ``GET /metrics``. Returns the app's registry."""
    registry = CollectorRegistry()
    requests_total = Counter("prelabel_http_requests", "HTTP requests answered", ["method", "endpoint", "status"],
                             registry=registry)
    latency = Histogram("prelabel_http_request_duration_seconds", "time to answer a request", ["endpoint"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                        registry=registry)
    Gauge("prelabel_model_requests_in_flight", "model requests running", registry=registry).set_function(
        lambda: gate.in_flight)
    Gauge("prelabel_model_queue_depth", "model requests waiting for a turn", registry=registry).set_function(
        lambda: gate.waiting)
    Gauge("prelabel_model_requests_rejected", "model requests answered 503 (back-pressure)",
          registry=registry).set_function(lambda: gate.rejected)
    registry.register(_ModelCollector(labeler))

    @app.before_request
    def start_request() -> None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.prelabel_request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        g.prelabel_token = _request_id.set(g.prelabel_request_id)
        g.prelabel_started = time.perf_counter()

    @app.after_request
    def finish_request(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("prelabel_started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        requests_total.labels(request.method, endpoint, str(response.status_code)).inc()
        latency.labels(endpoint).observe(elapsed)
        response.headers[REQUEST_ID_HEADER] = g.get("prelabel_request_id", "-")
        access_log.info("%s %s %d %.1f ms", request.method, request.path, response.status_code, elapsed * 1000,
                        extra={"method": request.method, "path": request.path, "status": response.status_code,
                               "duration_ms": round(elapsed * 1000, 1)})
        return response

    @app.teardown_request
    def end_request(_exc: BaseException | None) -> None:
        token = g.pop("prelabel_token", None)
        if token is not None:
            _request_id.reset(token)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return registry
