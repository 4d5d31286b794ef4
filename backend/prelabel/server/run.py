"""``prelabel serve``: an app under gunicorn (threads, so /health answers during a long predict).

On SIGTERM gunicorn stops accepting connections and lets in-flight requests finish (up to ``timeout`` s).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from prelabel.core.errors import PrelabelError
from prelabel.server.observability import configure_logging
from prelabel.settings import Settings

AppFactory = Callable[[Settings], Flask]


class _Gunicorn(BaseApplication):
    def __init__(self, app_factory: AppFactory, settings: Settings, options: dict[str, Any]) -> None:
        self.app_factory = app_factory
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        configure_logging(self.settings.log_format)
        return self.app_factory(self.settings)


class BindError(PrelabelError):
    """The address to serve on cannot be bound."""


def check_bindable(host: str, port: int) -> None:
    """Fail at once, naming the fix, when ``host:port`` cannot be bound (gunicorn would retry, then say
    "Can't connect")."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot serve on {host}:{port}: {exc.strerror} (--host)") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            why = "is already in use (another prelabel serve?)" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise BindError(f"cannot serve on {host}:{port}: the port {why}; choose another with --port") from exc


def serve(app_factory: AppFactory, settings: Settings, host: str, port: int, workers: int = 1, threads: int = 8,
          timeout: int = 300) -> None:
    """Run ``app_factory(settings)`` (e.g. the Label Studio backend) under gunicorn; each worker process builds
    its own app and loads the models once (in the background, at start-up)."""
    check_bindable(host, port)
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": timeout,
        "graceful_timeout": timeout,
        "accesslog": None,  # the app logs each request itself, with its id and without the query string
        "errorlog": "-",
    }
    _Gunicorn(app_factory, settings, options).run()
