"""``prelabel serve``: the app under gunicorn (threads, so /health answers during a long predict).

On SIGTERM gunicorn stops accepting connections and lets in-flight requests finish (up to ``timeout`` s).
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from prelabel.labelstudio.backend import create_app
from prelabel.server.observability import configure_logging
from prelabel.settings import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        configure_logging(self.settings.log_format)
        return create_app(self.settings)


def serve(settings: Settings, host: str, port: int, workers: int = 1, threads: int = 8, timeout: int = 300) -> None:
    """Run the backend; each worker process loads the models once (in the background, at start-up)."""
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
    _Gunicorn(settings, options).run()
