"""The embedding cache: computed once per key even under concurrent requests, bounded by its budget."""

import threading
import time

from prelabel.models.cache import LRUBytesCache


def test_concurrent_requests_for_one_key_compute_it_once():
    cache: LRUBytesCache[str] = LRUBytesCache(1000)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.05)  # long enough for the other threads to arrive while it runs
        return "embedding"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", compute, len)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["embedding"] * 4 and len(calls) == 1
    assert cache.get_or_compute("k", compute, len) == "embedding" and len(calls) == 1
    assert cache.used_bytes == len("embedding")


def test_values_over_the_budget_are_computed_but_not_kept():
    cache: LRUBytesCache[str] = LRUBytesCache(4)
    assert cache.get_or_compute("big", lambda: "too large", len) == "too large"
    assert "big" not in cache and cache.used_bytes == 0
