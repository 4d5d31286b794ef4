"""The one base of prelabel's user-facing errors, and the command line's exit codes.

Every error a user can fix (a bad image, label list, setting, model spec, request or file) derives from
:class:`PrelabelError`, and its message names what to change. The CLI prints it on one line and exits with its
:attr:`~PrelabelError.exit_code`; the HTTP servers answer 400 with ``{"error": message}`` (503 with
``Retry-After`` for :class:`Unavailable`). Any other exception is a bug: the CLI exits 1 with its traceback,
the servers answer 500 with the request id and log the traceback, ``prelabel batch`` records it with its
traceback in ``errors.jsonl``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every ``prelabel`` command (the README and ``prelabel --help`` print :data:`EXIT_CODES`)."""

    OK = 0
    BUG = 1  # an unexpected error: Python's own exit code, with the traceback
    USAGE = 2  # bad options, input files, labels or settings: nothing ran
    SOME_FAILED = 3  # the command ran, but some inputs failed (predict, batch) or were flagged (qa)
    UNAVAILABLE = 4  # a model, device or service it needs cannot be loaded or reached
    INTERRUPTED = 130  # Ctrl-C (work already checkpointed stays)


EXIT_CODES = (
    "exit codes (every command): 0 done; 1 an unexpected error, a bug (traceback printed: please report it); "
    "2 a usage or input error, nothing ran (the message names the fix); 3 done, but some inputs failed (predict, "
    "batch: listed in the output) or were flagged (qa); 4 a model, device or service cannot be loaded or reached "
    "(weights not downloaded, no GPU, Label Studio down); 130 interrupted"
)


class PrelabelError(Exception):
    """A problem the user can fix; the message says how, in one line.

    Not a ``ValueError``: code that answers a user catches this (or a subclass, or the one library error it
    means), so a ``ValueError`` from a bug is never mistaken for bad input."""

    exit_code: ExitCode = ExitCode.USAGE


class Unavailable(PrelabelError):
    """The service cannot answer right now (models loading, queue full); retry after ``retry_after_s``."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, retry_after_s: int = 10) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelLoadError(PrelabelError):
    """A model spec that could not be turned into a model; the message says what to pass instead."""


class ModelUnavailable(ModelLoadError):
    """A well-formed model spec whose weights or device cannot be had here (not downloaded while offline, the
    hub unreachable, no such device)."""

    exit_code = ExitCode.UNAVAILABLE


class BadRequest(PrelabelError):
    """A request a tool (Label Studio, CVAT) or a person sent wrong."""
