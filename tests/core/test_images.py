import base64
import io

import numpy as np
import pytest
from PIL import Image

from prelabel.core.images import ImageError, decode_base64_image, decode_image


def encoded(image: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_exif_orientation_is_applied_so_coordinates_match_what_annotators_see():
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pixels = decode_image(encoded(image, exif=exif))
    assert pixels.shape == (40, 20, 3), "displayed as portrait"
    assert pixels[2, 10, 0] > 200 and pixels[2, 10, 1] < 80, "the stripe is now on top"


def test_grayscale_and_rgba_become_rgb():
    assert decode_image(encoded(Image.new("L", (5, 4)), "PNG")).shape == (4, 5, 3)
    assert decode_image(encoded(Image.new("RGBA", (5, 4)), "PNG")).shape == (4, 5, 3)


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"GIF89a broken", "not"), (b"\x89PNG\r\n\x1a\n", "not")])
def test_broken_bytes_are_clear_errors(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_pixel_limit_guards_against_decompression_bombs():
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(encoded(Image.new("RGB", (300, 300)), "PNG"), max_pixels=10_000)


def test_base64_with_and_without_data_prefix():
    raw = encoded(Image.new("RGB", (6, 3)), "PNG")
    text = base64.b64encode(raw).decode()
    assert decode_base64_image(text).shape == (3, 6, 3)
    assert decode_base64_image("data:image/png;base64," + text).shape == (3, 6, 3)
    with pytest.raises(ImageError):
        decode_base64_image(base64.b64encode(b"not an image").decode())
    assert np.asarray(decode_base64_image(text)).dtype == np.uint8
