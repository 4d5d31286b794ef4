"""An LRU cache of image embeddings bounded by a memory budget."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

V = TypeVar("V")


def image_key(image: np.ndarray, model_id: str) -> str:
    """A content hash of an image's pixels and shape, scoped to one model."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16)
    digest.update(repr((image.shape, str(image.dtype), model_id)).encode())
    return digest.hexdigest()


class LRUBytesCache(Generic[V]):
    """Least-recently-used cache that evicts until the stored values fit ``budget_bytes``.

    Thread-safe; hit and miss counters feed the metrics.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: str, compute: Callable[[], V], size_bytes: Callable[[V], int]) -> V:
        """The value stored under ``key``, else ``compute()``'s, stored with ``size_bytes(value)``; concurrent
        callers for a missing key wait for one computation instead of each running it."""
        cached = self.get(key)
        if cached is not None:
            return cached
        with self._compute_lock:
            cached = self.get(key)
            if cached is not None:
                return cached
            value = compute()
            self.put(key, value, size_bytes(value))
            return value

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: V, size_bytes: int) -> None:
        """Store ``value``; a value larger than the whole budget is not kept."""
        with self._lock:
            if key in self._items:
                self.used_bytes -= self._items.pop(key)[1]
            if size_bytes > self.budget_bytes:
                return
            self._items[key] = (value, size_bytes)
            self.used_bytes += size_bytes
            while self.used_bytes > self.budget_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self.used_bytes -= evicted

    def clear(self) -> None:
        """Drop every stored value (the hit and miss counters stay)."""
        with self._lock:
            self._items.clear()
            self.used_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` is stored; neither a hit nor a miss, and the LRU order is unchanged."""
        with self._lock:
            return key in self._items
