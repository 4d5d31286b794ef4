"""JSON files written as they are produced: a document whose lists may be iterators, written one element at a time
with the bytes ``json.dumps(document, indent=1)`` would give, so that no output is ever held whole in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def write_json(path: Path, document: Any) -> Path:
    """Write ``document`` (dicts, lists, iterators of JSON values, JSON scalars) to ``path``, ending in a newline."""
    with path.open("w", encoding="utf-8") as handle:
        _write(handle, document, 0)
        handle.write("\n")
    return path


def _write(handle: IO[str], value: Any, level: int) -> None:
    if isinstance(value, dict) and value:
        handle.write("{")
        for number, (key, item) in enumerate(value.items()):
            handle.write(("," if number else "") + "\n" + " " * (level + 1) + json.dumps(key) + ": ")
            _write(handle, item, level + 1)
        handle.write("\n" + " " * level + "}")
    elif isinstance(value, (list, Iterator)):
        empty = True
        for item in value:
            handle.write(("[" if empty else ",") + "\n" + " " * (level + 1))
            _write(handle, item, level + 1)
            empty = False
        handle.write("[]" if empty else "\n" + " " * level + "]")
    else:  # a scalar or an empty dict
        handle.write(json.dumps(value))
