"""Which torch devices this process can use, and ``auto`` resolved to one of them.

Imports torch but not transformers, and asks CUDA for its devices through NVML (torch's fork-safe count), so
``prelabel serve`` can resolve ``auto`` in gunicorn's master before its workers fork.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prelabel.core.errors import ModelUnavailable

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of bf16 dot-product instructions


def available_devices() -> list[str]:
    """The devices this torch build can use here."""
    devices = ["cpu"]
    # device_count() asks NVML and leaves CUDA uninitialised (is_available() would cuInit and poison a fork);
    # torch falls back to the CUDA runtime only where NVML cannot be loaded.
    cuda = torch.cuda.device_count()  # 0 on a CPU-only build
    if cuda:
        devices += ["cuda"] + [f"cuda:{i}" for i in range(cuda)]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def pick_device(requested: str = "auto") -> str:
    """``cuda`` if present, else ``mps``, else ``cpu``, unless a device is named (which must be available)."""
    if requested == "auto":
        return next((d for d in ("cuda", "mps") if d in available_devices()), "cpu")
    if requested not in available_devices():
        raise ModelUnavailable(f"device {requested!r} is not available with this torch build "
                             f"(torch {torch.__version__}); available: {', '.join(available_devices())} "
                             f"(--device / PRELABEL_DEVICE)")
    return requested


def cpu_flags() -> set[str]:
    """The flags this CPU reports in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 dot products natively (AVX512-BF16 or AMX), not by emulation."""
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))
