"""Generated image folders for the batch tests and benchmark: coloured shapes on a dark background."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_shape_images(folder: Path, count: int, size: tuple[int, int] = (320, 240), seed: int = 0) -> list[Path]:
    """``count`` PNGs (every third in a subfolder) with a rectangle and a circle at random places."""
    rng = np.random.default_rng(seed)
    width, height = size
    paths = []
    for i in range(count):
        path = folder / ("nested" if i % 3 == 0 else "") / f"img{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = np.full((height, width, 3), 30, np.uint8)
        x, y = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        cv2.rectangle(image, (x, y), (x + width // 3, y + height // 3), (200, 60, 60), -1)
        cv2.circle(image, (int(rng.integers(20, width - 20)), int(rng.integers(20, height - 20))), 18, (60, 200, 60), -1)
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths
