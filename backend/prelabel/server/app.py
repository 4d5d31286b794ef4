"""The tool-free part of every prelabel HTTP server: request ids, logs, metrics, auth, back-pressure, OpenAPI, errors.

A tool's routes (the Label Studio ML backend is a Blueprint in :mod:`prelabel.labelstudio.backend`) are
registered on the app this factory returns. Every :class:`~prelabel.core.errors.PrelabelError` becomes a
400 with ``{"error": message}`` (503 with ``Retry-After`` for :class:`~prelabel.core.errors.Unavailable`);
any other exception is a bug: a 500 with the request id in the body, its traceback logged under that id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from prelabel.core.errors import PrelabelError, Unavailable
from prelabel.pipeline import Labeler
from prelabel.server.limits import ModelGate, install_limits
from prelabel.server.observability import current_request_id, install_observability
from prelabel.server.openapi import install_openapi
from prelabel.server.security import install_auth
from prelabel.settings import Settings

log = logging.getLogger(__name__)


def make_app(settings: Settings, gate: ModelGate, labeler: Callable[[], Labeler | None],
             model_endpoints: Iterable[str]) -> Flask:
    """A Flask app with the shared mechanics installed; ``model_endpoints`` take a turn from ``gate``."""
    app = Flask("prelabel")
    install_observability(app, gate, labeler)  # first: request ids for everything after
    install_auth(app, settings)
    install_limits(app, gate, frozenset(model_endpoints))
    install_openapi(app)

    @app.errorhandler(PrelabelError)
    def user_error(exc: PrelabelError) -> tuple[Response, int, dict[str, str]]:
        if isinstance(exc, Unavailable):
            return jsonify({"error": str(exc)}), 503, {"Retry-After": str(exc.retry_after_s)}
        log.warning("400: %s", exc)
        return jsonify({"error": str(exc)}), 400, {}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.description}), exc.code or 500

    @app.errorhandler(Exception)
    def bug(exc: Exception) -> tuple[Response, int]:
        """Anything else is a bug: its traceback in the log, the request id in the answer; the server goes on."""
        request_id = current_request_id()
        log.error("500: %s: %s (a bug)", type(exc).__name__, exc, exc_info=exc)
        return jsonify({"error": f"internal error (a bug in prelabel, not your input): {type(exc).__name__}; "
                                 f"report it with request id {request_id}", "request_id": request_id}), 500

    return app
