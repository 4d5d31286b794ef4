"""Synthetic videos (moving squares) and test doubles for the video tests: a detector and a tracker that find
bright squares with plain OpenCV. They are not models; they let tests check the plumbing exactly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from prelabel.core.regions import Regions
from prelabel.core.video import write_video


def square_at(index: int, speed: int = 2, start: tuple[int, int] = (10, 30)) -> tuple[int, int]:
    """Top-left corner of the moving square on frame ``index``."""
    return start[0] + speed * index, start[1]


def square_frames(count: int, size: tuple[int, int] = (160, 96), side: int = 24, speed: int = 2,
                  second_from: int | None = None) -> Iterator[np.ndarray]:
    """A bright square moving right on a dark frame; a second square appears at ``second_from`` (if given)."""
    width, height = size
    for i in range(count):
        frame = np.full((height, width, 3), 20, np.uint8)
        x, y = square_at(i, speed)
        x = x % max(1, width - side)
        frame[y:y + side, x:x + side] = 230
        if second_from is not None and i >= second_from:
            frame[height - side - 4:height - 4, 4:4 + side] = 230
        yield frame


def write_square_video(path: Path, count: int, fps: float = 25.0, **kwargs) -> Path:
    return write_video(path, square_frames(count, **kwargs), fps)


def bright_boxes(frame: np.ndarray, threshold: int = 128) -> np.ndarray:
    """``(N, 4)`` boxes of the bright connected blobs of a frame."""
    mask = (frame.max(axis=2) > threshold).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:] if area >= 16]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class BrightSquareDetectorDouble:
    """Test double of a Detector: every bright blob is the first label, score 0.9."""

    model_id = "test-double-bright-squares"
    random_weights = False

    def detect(self, image: np.ndarray, labels: Sequence, floor: float) -> Regions:
        boxes = bright_boxes(image)
        return Regions((image.shape[1], image.shape[0]), [label.name for label in labels], boxes,
                       np.full(len(boxes), 0.9), np.zeros(len(boxes)))


class TemplateTrackerDouble:
    """Test double of a Tracker: follows each box to the best-matching bright blob near it (same interface)."""

    model_id = "test-double-template"
    random_weights = False

    def __init__(self) -> None:
        self.calls = 0

    def track(self, frames: Iterable[np.ndarray], boxes_xyxy: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.calls += 1
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4).copy()
        iterator = iter(frames)
        next(iterator, None)
        for frame in iterator:
            found = bright_boxes(frame)
            scores = np.zeros(len(boxes), np.float32)
            for i, box in enumerate(boxes):
                if len(found):
                    centres = (found[:, :2] + found[:, 2:]) / 2
                    distance = np.linalg.norm(centres - (box[:2] + box[2:]) / 2, axis=1)
                    j = int(distance.argmin())
                    if distance[j] < 40:
                        boxes[i] = found[j]
                        scores[i] = 0.95
            yield boxes.copy(), scores
