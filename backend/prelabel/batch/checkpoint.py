"""An append-only JSONL checkpoint: a header line, then one record per finished image.

Every record is flushed and fsynced before the next image counts as done, so a ``kill -9`` loses at
most the image in flight. A torn last line (the process died mid-write) is cut off on reopening and
that image is simply done again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from prelabel.core.errors import PrelabelError

FORMAT = "prelabel-batch-checkpoint/1"
log = logging.getLogger(__name__)


class CheckpointMismatch(PrelabelError):
    """The checkpoint was written with other models, labels or options than this run."""


class Checkpoint:
    """Finished records by image key, and an open handle to append new ones."""

    def __init__(self, path: Path, header: dict[str, Any], records: dict[str, dict[str, Any]], handle: IO[str]) -> None:
        self.path = path
        self.header = header
        self.records = records
        self._handle = handle

    @classmethod
    def open(cls, path: Path, header: dict[str, Any], restart: bool = False) -> Checkpoint:
        """Open ``path`` to resume (or start) a run described by ``header``.

        Raises :class:`CheckpointMismatch` when an existing checkpoint with finished images has a different
        header, unless ``restart`` discards it; one with no finished image holds no work and is started anew
        (a run that failed before its first image, say while loading models, must not block its retry).
        """
        header = {"format": FORMAT, **header}
        records: dict[str, dict[str, Any]] = {}
        if path.exists() and not restart:
            stored, records, valid_bytes = read_checkpoint(path)
            if stored != header and not records:
                log.info("%s holds no finished image: starting it anew with this run's settings", path)
                return cls.open(path, header, restart=True)
            if stored != header:
                raise CheckpointMismatch(_mismatch_message(path, stored, header))
            with path.open("r+b") as raw:
                raw.truncate(valid_bytes)
            handle = path.open("a", encoding="utf-8")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("w", encoding="utf-8")
            _write_line(handle, {"header": header})
        return cls(path, header, records, handle)

    def append(self, record: dict[str, Any]) -> None:
        """Store one finished image durably."""
        _write_line(self._handle, record)
        self.records[record["key"]] = record

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], int]:
    """The header, the records by key, and how many leading bytes hold complete lines."""
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1  # anything after the last newline is a torn write
    lines = data[:complete].decode("utf-8").splitlines()
    try:
        parsed = [json.loads(line) for line in lines]
    except json.JSONDecodeError as exc:
        raise PrelabelError(f"{path} is corrupt ({exc}); rerun with --restart to start over") from exc
    if not parsed or "header" not in parsed[0]:
        raise PrelabelError(f"{path} is not a prelabel batch checkpoint; rerun with --restart to start over")
    return parsed[0]["header"], {record["key"]: record for record in parsed[1:]}, complete


def _write_line(handle: IO[str], record: dict[str, Any]) -> None:
    handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _mismatch_message(path: Path, stored: dict[str, Any], header: dict[str, Any]) -> str:
    changed = sorted(k for k in set(stored) | set(header) if stored.get(k) != header.get(k))
    return (f"{path} was written with different {', '.join(changed)}; rerun the same command to resume it, "
            f"or pass --restart to discard it (or use another --out)")
