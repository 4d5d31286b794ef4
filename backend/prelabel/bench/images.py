"""The bench's test images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BenchImage:
    """A test image as the bytes a request carries and as decoded pixels."""

    name: str
    data: bytes
    pixels: np.ndarray

    def click_points(self, count: int) -> np.ndarray:
        """``count`` fixed click positions spread over the image, ``(count, 2)`` pixels."""
        height, width = self.pixels.shape[:2]
        fractions = np.stack([np.linspace(0.3, 0.7, count), np.linspace(0.6, 0.4, count)], axis=1)
        return (fractions * [width, height]).astype(np.float32)
