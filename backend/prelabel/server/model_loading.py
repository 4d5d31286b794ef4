"""The Labeler of a server process, loaded once in a background thread so /health answers at once meanwhile."""

from __future__ import annotations

import logging
import threading

from prelabel.core.errors import Unavailable
from prelabel.pipeline import Labeler, build_labeler
from prelabel.settings import Settings

log = logging.getLogger(__name__)


class ModelHolder:
    """Builds the Labeler from the settings (or holds a given one); ``get`` waits for it or raises 503."""

    def __init__(self, settings: Settings, labeler: Labeler | None = None) -> None:
        self.labeler = labeler
        self.error: str | None = None
        self._ready = threading.Event()
        if labeler is not None:
            self._ready.set()
        else:
            threading.Thread(target=self._load, args=(settings,), name="prelabel-load", daemon=True).start()

    def _load(self, settings: Settings) -> None:
        try:
            self.labeler = build_labeler(settings)
            self.labeler.expect_images(None)  # a server's job is open-ended: runtimes convert in the background now
        except Exception as exc:  # reported by /health and every model request
            log.error("model loading failed: %s", exc)
            self.error = str(exc)
        finally:
            self._ready.set()

    @property
    def state(self) -> str:
        return "error" if self.error else "ready" if self.labeler else "loading"

    def get(self, timeout: float) -> Labeler:
        if not self._ready.wait(timeout) or self.labeler is None:
            raise Unavailable(self.error or "models are still loading; try again shortly")
        return self.labeler
