"""Label Studio's coordinates: percent of the image's (or video frame's) width and height, origin top-left.

The one owner of the percent <-> pixel conversion, as segment-anything's ``SamPredictor`` owns its transforms:
results written, results read, smart-tool clicks and video keyframes all go through :class:`PercentFrame`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class PercentFrame:
    """An image (or video frame) of ``width`` x ``height`` pixels, in which Label Studio gives percentages."""

    width: float
    height: float

    def to_pixels(self, points: ArrayLike) -> np.ndarray:
        """``(..., 2)`` percent ``[x, y]`` -> pixels (float64)."""
        return np.asarray(points, dtype=np.float64) * [self.width, self.height] / 100

    def to_percent(self, points: ArrayLike) -> np.ndarray:
        """``(..., 2)`` pixel ``[x, y]`` -> percent (float64)."""
        return 100 * np.asarray(points, dtype=np.float64) / [self.width, self.height]

    def box_to_pixels(self, xywh: ArrayLike) -> np.ndarray:
        """``(..., 4)`` percent ``[x, y, width, height]`` (top-left corner and size) -> pixel ``[x1, y1, x2, y2]``."""
        xywh = np.asarray(xywh, dtype=np.float64)
        xyxy = np.concatenate([xywh[..., :2], xywh[..., :2] + xywh[..., 2:]], axis=-1)
        return self.to_pixels(xyxy.reshape(*xyxy.shape[:-1], 2, 2)).reshape(xyxy.shape)

    def box_to_percent(self, xyxy: ArrayLike) -> np.ndarray:
        """``(..., 4)`` pixel ``[x1, y1, x2, y2]`` -> percent ``[x, y, width, height]``."""
        xyxy = np.asarray(xyxy, dtype=np.float64)
        xywh = np.concatenate([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2]], axis=-1)
        return self.to_percent(xywh.reshape(*xywh.shape[:-1], 2, 2)).reshape(xywh.shape)
