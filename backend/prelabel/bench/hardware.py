"""What the machine can do: its CPU features, its measured matmul peak per dtype, and a model's FLOPs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from prelabel.models.devices import cpu_flags

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8", "amx_fp16")
"""The /proc/cpuinfo flags that decide which fast paths a CPU has (bf16: avx512_bf16 or AMX)."""


def cpu_model() -> str:
    """The CPU's model name (Linux), else ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_features() -> list[str]:
    """The :data:`CPU_FLAGS` this CPU reports in /proc/cpuinfo (empty where there is no such file)."""
    flags = cpu_flags()
    return [flag for flag in CPU_FLAGS if flag in flags]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: str = "cpu", side: int = 2048, budget_s: float = 3.0) -> tuple[float, int]:
    """GFLOP/s of a ``side``² matmul in ``dtype`` (median of 3 after a warm-up), at torch's thread setting.

    A dtype the device only emulates can take a minute per 2048² product (fp16 on most CPUs): a 256² trial
    estimates it first, and the side shrinks until one product fits ``budget_s``. Returns (GFLOP/s, side).
    """
    trial = 256
    a = torch.randn(trial, trial, device=device).to(dtype)
    a @ a
    _sync(device)
    started = time.perf_counter()
    a @ a
    _sync(device)
    rate = 2 * trial**3 / max(time.perf_counter() - started, 1e-9)
    while side > trial and 2 * side**3 / rate > budget_s:
        side //= 2
    a, b = (torch.randn(side, side, device=device).to(dtype) for _ in range(2))
    a @ b
    _sync(device)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - started)
    return 2 * side**3 / sorted(times)[1] / 1e9, side


def count_flops(run: Callable[[], object]) -> float:
    """FLOPs of one call of ``run`` as torch's ``FlopCounterMode`` counts them (matmuls, convolutions, SDPA)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return float(counter.get_total_flops())
