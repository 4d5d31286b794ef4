"""Decode images safely: EXIF orientation applied, size limits enforced, clear errors."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
from prelabel.core.errors import PrelabelError


class ImageError(PrelabelError):
    """Bytes that are not a usable image; the message is safe to show to a user."""


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "image") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array, rotated as its EXIF orientation says (as annotators see it)."""
    if not data:
        raise ImageError(f"{source} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{source} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
                    f"(raise max_pixels / PRELABEL_MAX_PIXELS if this is intended)"
                )
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{source} is not an image in a format Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{source} is not a readable image: {exc}") from exc


def load_image_file(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode a local image file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    return decode_image(path.read_bytes(), max_pixels, source=str(path))


def decode_base64_image(text: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a base64 image as CVAT sends it (a ``data:`` prefix is tolerated)."""
    if not isinstance(text, str) or not text:
        raise ImageError("'image' must be a non-empty base64 string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"'image' is not valid base64: {exc}") from exc
    return decode_image(data, max_pixels, source="base64 image")
