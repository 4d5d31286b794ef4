"""Decode images safely: EXIF orientation applied, size limits enforced, clear errors."""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prelabel.core.errors import PrelabelError

DEFAULT_MAX_PIXELS = 50_000_000
# prelabel's own limit (max_pixels / PRELABEL_MAX_PIXELS) is checked on every decode, from the header and before
# any pixel is decoded; Pillow's process-wide default (178,956,970 pixels) would otherwise cap it whatever the
# setting says. This module is the only place prelabel decodes images.
Image.MAX_IMAGE_PIXELS = None


class ImageError(PrelabelError):
    """Bytes that are not a usable image; the message is safe to show to a user."""


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "image") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array, rotated as its EXIF orientation says (as annotators see it)."""
    if not data:
        raise ImageError(f"{source} is empty")
    try:
        image = Image.open(io.BytesIO(data))
        _check_pixels(source, image.size, max_pixels)
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{source} is not an image in a format Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's decoders on corrupt data ('tile cannot extend')
        raise ImageError(f"{source} is not a readable image: {exc}") from exc


def _check_pixels(source: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(f"{source} is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,} (raise PRELABEL_MAX_PIXELS if this is intended)")


def check_image_file(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Fail as :func:`load_image_file` would on a missing, unreadable or too large file, from its header only
    (milliseconds, whatever the image's size: commands check every input before loading models)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            _check_pixels(str(path), image.size, max_pixels)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path} is not an image in a format Pillow can read") from exc
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"{path} is not a readable image: {exc}") from exc


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
    except binascii.Error as exc:
        raise ImageError(f"'image' is not valid base64: {exc}") from exc
    return decode_image(data, max_pixels, source="base64 image")
