"""Measuring tools of the benchmark: interleaved repeats, time spent inside model forwards, memory."""

from __future__ import annotations

import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import psutil
from torch import nn


@dataclass(frozen=True)
class Case:
    """One thing to time, given the repeat number; ``setup`` runs untimed before it (e.g. emptying a cache)."""

    run: Callable[[int], object]
    setup: Callable[[int], object] | None = None


def interleaved(cases: dict[str, Case], repeats: int) -> dict[str, list[float]]:
    """Seconds per repeat of every case, run A, B, C, then C, B, A, ... so load drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            case = cases[name]
            if case.setup is not None:
                case.setup(repeat)
            started = time.perf_counter()
            case.run(repeat)
            times[name].append(time.perf_counter() - started)
    return times


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of per-repeat ratios (each pair measured back to back, so load changes cancel)."""
    return median(n / d for n, d in zip(numerators, denominators))


class ModelTimer:
    """Wall time spent inside the forward passes of the given modules (nested calls counted once).

    Used to split a request's wall time into "inside the models" and "everything else" (decoding,
    resizing, polygonisation, JSON, HTTP).
    """

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        self.modules = list(modules)
        self.seconds = 0.0
        self._depth = 0
        self._started = 0.0
        self._handles: list = []

    def _enter(self, *_: object) -> None:
        if self._depth == 0:
            self._started = time.perf_counter()
        self._depth += 1

    def _exit(self, *_: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._started

    def wrap(self, fn: Callable[..., object]) -> Callable[..., object]:
        """``fn`` timed as model time too: an encoder of another runtime (ONNX Runtime, OpenVINO) has no hooks."""

        def timed(*args: object, **kwargs: object) -> object:
            self._enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._exit()

        return timed

    def __enter__(self) -> ModelTimer:
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._exit))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    return psutil.Process().memory_info().rss / 1024**2


def peak_rss_during(run: Callable[[], object], interval_s: float = 0.002) -> float:
    """How far this process's resident memory rose above its level at the start while ``run`` ran, in MiB
    (sampled every ``interval_s`` in a thread: a lower bound, within one sample of the true peak)."""
    process = psutil.Process()
    start = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(peak, process.memory_info().rss, start) / 1024**2 - start / 1024**2


def peak_rss_mb() -> float:
    """The highest resident memory this process has had, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
