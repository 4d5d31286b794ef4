"""The one base of prelabel's user-facing errors.

Every error a user can fix (a bad image, label list, setting, model spec, request or file) derives from
:class:`PrelabelError`, and its message names what to change. The CLI prints it on one line and exits 2;
the HTTP servers answer 400 with ``{"error": message}`` (503 with ``Retry-After`` for :class:`Unavailable`).
"""

from __future__ import annotations


class PrelabelError(ValueError):
    """A problem the user can fix; the message says how, in one line."""


class Unavailable(PrelabelError):
    """The service cannot answer right now (models loading, queue full); retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int = 10) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelLoadError(PrelabelError):
    """A model spec that could not be turned into a model; the message says what to pass instead."""


class BadRequest(PrelabelError):
    """A request a tool (Label Studio, CVAT) or a person sent wrong."""
