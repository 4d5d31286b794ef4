"""Overlay pictures of Regions that a person can check at a glance."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from prelabel.core.regions import Regions


def label_color(label_id: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per label id."""
    r, g, b = colorsys.hsv_to_rgb((label_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_regions(image: np.ndarray, regions: Regions, mask_alpha: float = 0.45) -> np.ndarray:
    """The RGB image with masks tinted, boxes outlined and ``label score`` captions."""
    canvas = image.copy()
    if regions.masks is not None:
        for mask, label_id in zip(regions.masks, regions.label_ids):
            color = np.array(label_color(int(label_id)), dtype=np.float32)
            canvas[mask] = (canvas[mask] * (1 - mask_alpha) + color * mask_alpha).astype(np.uint8)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box, score, label_id in zip(regions.boxes_xyxy, regions.scores, regions.label_ids):
        color = label_color(int(label_id))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        caption = f"{regions.label_names[int(label_id)]} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, 1)
        top = max(0, y1 - th - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 4, top + th + 4), color, -1)
        cv2.putText(canvas, caption, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 0, 0), 1)
    if regions.meta.get("random_weights"):
        cv2.putText(canvas, "RANDOM WEIGHTS - not a real prediction", (5, image.shape[0] - 8),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (255, 0, 0), 1)
    return canvas


def save_overlay(path: str, image: np.ndarray, regions: Regions) -> None:
    """Write the overlay as PNG."""
    if not cv2.imwrite(path, cv2.cvtColor(draw_regions(image, regions), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
