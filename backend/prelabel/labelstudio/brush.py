"""Label Studio's brush masks: its RLE of a full-frame RGBA image, through label_studio_sdk's codec (the
``[labelstudio]`` extra)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a bool mask."""
    from label_studio_sdk.converter.brush import mask2rle  # optional: the [labelstudio] extra, ~1 s to import

    return [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]


def preload_brush_codec() -> None:
    """Import label_studio_sdk's brush codec now, if installed: its package imports the whole converter (~1 s),
    which would otherwise land in a server's first answer with a brush."""
    if importlib.util.find_spec("label_studio_sdk"):
        importlib.import_module("label_studio_sdk.converter.brush")


def brush_rle_to_mask(rle: Any, width: int, height: int) -> np.ndarray | None:
    """Decode Label Studio's brush RLE into a bool ``(H, W)`` mask; ``None`` when ``rle`` is not the RLE of a
    ``width`` x ``height`` RGBA image (checked from its header before anything is allocated)."""
    from label_studio_sdk.converter.brush import decode_rle  # optional: the [labelstudio] extra, ~1 s to import

    if not isinstance(rle, list) or len(rle) < 4 or not all(isinstance(v, int) and 0 <= v < 256 for v in rle):
        return None
    if int.from_bytes(bytes(rle[:4]), "big") != width * height * 4:  # the header's value count
        return None
    try:
        values = decode_rle(rle)
    except (ValueError, IndexError, OverflowError):  # label_studio_sdk's decoder on a corrupt stream, nothing else
        return None
    return values.reshape(height, width, 4)[:, :, 3] > 0
