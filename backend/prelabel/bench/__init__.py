"""``prelabel bench``: side-by-side performance measurements (see docs/performance.md)."""
