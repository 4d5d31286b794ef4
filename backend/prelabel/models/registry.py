"""Resolve model specs (hub ids, local folders, official checkpoints, ``random-*``) into loaded models."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    SamImageProcessorPil,
    SamModel,
    SamProcessor,
)

from prelabel.models.grounding_dino import GroundingDinoDetector
from prelabel.models.random_weights import RANDOM_SPECS, build_grounding_dino, build_sam
from prelabel.models.sam import SamSegmenter
from prelabel.models.sam_checkpoint import CheckpointError, load_official_sam

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SEGMENTER = "facebook/sam-vit-base"
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ModelLoadError(RuntimeError):
    """A model spec that could not be turned into a model; the message says what to pass instead."""


def pick_device(requested: str = "auto") -> str:
    """``cuda`` if present, else ``mps``, else ``cpu``, unless a device is named."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(name: str) -> torch.dtype:
    """``fp32`` (default), ``fp16`` or ``bf16``."""
    if name not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {name!r}; use one of {', '.join(sorted(_DTYPES))}")
    return _DTYPES[name]


def _check_local(kind: str, spec: str) -> None:
    """A spec that names a path (absolute, relative, ``~``, or more than ``org/name``) must exist locally."""
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or Path(spec).exists():
        if not Path(spec).expanduser().exists():
            raise ModelLoadError(
                f"the {kind} path {spec!r} does not exist. Pass a local folder written by save_pretrained "
                f"(or a downloaded hub snapshot), or a hub id such as "
                f"{DEFAULT_DETECTOR if kind == 'detector' else DEFAULT_SEGMENTER}."
            )


def _load_error(kind: str, spec: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load the {kind} {spec!r}: {exc.__class__.__name__}: {exc}\n"
        f"Pass a local folder written by save_pretrained (or a downloaded hub snapshot), "
        f"e.g. --{kind} /models/{spec.split('/')[-1]}, or set PRELABEL_{kind.upper()}; "
        f"'random-tiny' / 'random-full' run offline with random weights (tests and benchmarks only)."
    )


@lru_cache(maxsize=4)
def load_detector(spec: str = DEFAULT_DETECTOR, device: str = "auto", dtype: str = "fp32") -> GroundingDinoDetector:
    """A Grounding DINO detector from a hub id, a local folder, or ``random-tiny``/``random-full``.

    Loaded once per process and spec (the result is cached).
    """
    torch.set_flush_denormal(True)
    device, torch_dtype = pick_device(device), pick_dtype(dtype)
    if spec in RANDOM_SPECS:
        model, processor = build_grounding_dino(spec)
        return GroundingDinoDetector(model, processor, spec, True, device, torch_dtype)
    if spec.endswith(".pth"):
        raise ModelLoadError(
            f"official GroundingDINO checkpoints ({spec}) are not supported yet; use the transformers "
            f"port: --detector IDEA-Research/grounding-dino-tiny or a local folder of it"
        )
    _check_local("detector", spec)
    try:
        model = GroundingDinoForObjectDetection.from_pretrained(spec)
        processor = GroundingDinoProcessor(
            GroundingDinoImageProcessorPil.from_pretrained(spec), AutoTokenizer.from_pretrained(spec)
        )
    except (OSError, ValueError) as exc:
        raise _load_error("detector", spec, exc) from exc
    return GroundingDinoDetector(model, processor, spec, False, device, torch_dtype)


@lru_cache(maxsize=4)
def load_segmenter(
    spec: str = DEFAULT_SEGMENTER, device: str = "auto", dtype: str = "fp32", cache_mb: int = 512
) -> SamSegmenter:
    """A SAM segmenter from a hub id, a local folder, an official ``sam_vit_*.pth`` or ``random-*``."""
    torch.set_flush_denormal(True)
    device, torch_dtype = pick_device(device), pick_dtype(dtype)
    cache_bytes = cache_mb * 1024**2
    if spec in RANDOM_SPECS:
        model, processor = build_sam(spec)
        return SamSegmenter(model, processor, spec, True, device, torch_dtype, cache_bytes)
    if spec.endswith(".pth"):
        if not Path(spec).is_file():
            raise ModelLoadError(f"SAM checkpoint {spec} does not exist")
        try:
            model = load_official_sam(spec)
        except CheckpointError as exc:
            raise ModelLoadError(str(exc)) from exc
        side = model.config.vision_config.image_size
        processor = SamProcessor(
            SamImageProcessorPil(size={"longest_edge": side}, pad_size={"height": side, "width": side})
        )
        return SamSegmenter(model, processor, spec, False, device, torch_dtype, cache_bytes)
    _check_local("segmenter", spec)
    try:
        model = SamModel.from_pretrained(spec)
        processor = SamProcessor(SamImageProcessorPil.from_pretrained(spec))
    except (OSError, ValueError) as exc:
        raise _load_error("segmenter", spec, exc) from exc
    return SamSegmenter(model, processor, spec, False, device, torch_dtype, cache_bytes)
