"""One value parsed from user text or JSON: the one place where a parser's ``ValueError`` means "not that kind".

Callers turn ``None`` into their own user-facing error naming the field and the fix; everything else that raises
``ValueError`` in prelabel is a bug and surfaces as one (see :mod:`prelabel.core.errors`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def parsed(parse: Callable[[Any], T], value: Any) -> T | None:
    """``parse(value)``, or ``None`` when ``value`` is not of that kind.

    ``parse`` reads one value and nothing else (``float``, ``int``, ``datetime.fromisoformat``,
    ``base64.b64decode``, ...): a wider callable would hide its own bugs here.
    """
    try:
        return parse(value)
    except (TypeError, ValueError, OverflowError):  # what Python's parsers raise for a value of another kind
        return None


def finite(value: Any) -> float | None:
    """``value`` as a finite float (``"0.5"``, ``3``), or ``None`` (not a number, NaN, infinite, a bool)."""
    number = None if isinstance(value, bool) else parsed(float, value)
    return number if number is not None and math.isfinite(number) else None


def integer(value: Any) -> int | None:
    """``value`` as an int (``"12"``, ``12``, ``12.0``), or ``None`` (not a whole number, a bool)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return parsed(int, value)
