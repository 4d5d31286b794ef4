"""What the Nuclio functions and the cvat-sdk functions share: CVAT's threshold and click prompts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from prelabel.core.errors import BadRequest
from prelabel.core.labels import LabelPrompt
from prelabel.core.parsing import finite


def parse_threshold(value: Any) -> float | None:
    """CVAT's confidence threshold: ``None`` when absent, else a number in [0, 1]."""
    if value is None:
        return None
    threshold = finite(value)
    if threshold is None:
        raise BadRequest(f"'threshold' must be a number in [0, 1], got {value!r}")
    if not 0.0 <= threshold <= 1.0:
        raise BadRequest(f"'threshold' must lie in [0, 1], got {threshold}")
    return threshold


def with_threshold(labels: Sequence[LabelPrompt], threshold: float | None) -> list[LabelPrompt]:
    """The labels with CVAT's threshold replacing every box threshold; unchanged when there is none.

    Without a threshold the detector's default and the per-label thresholds apply.
    """
    if threshold is None:
        return list(labels)
    return [replace(label, box_threshold=threshold) for label in labels]


def click_prompt(
    width: int,
    height: int,
    pos_points: Any,
    neg_points: Any,
    box: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """SAM inputs from CVAT's clicks: points ``(K, 2)``, their labels (1 object, 0 background), a box or None.

    Points must lie inside the image; a box (``[[x1, y1], [x2, y2]]`` or ``[x1, y1, x2, y2]``) is
    clipped to it. At least one positive point or a box is needed.
    """
    positive = _points("pos_points", pos_points, width, height)
    negative = _points("neg_points", neg_points, width, height)
    box_xyxy = _box(box, width, height)
    if not len(positive) and box_xyxy is None:
        raise BadRequest("give at least one positive point or a bounding box")
    points = np.concatenate([positive, negative]).astype(np.float32)
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))]).astype(np.int64)
    return points, labels, box_xyxy


def _points(name: str, value: Any, width: int, height: int) -> np.ndarray:
    if value is None:
        return np.zeros((0, 2))
    if not isinstance(value, (list, tuple)):
        raise BadRequest(f"'{name}' must be a list of [x, y] pairs, got {type(value).__name__}")
    points = []
    for index, point in enumerate(value):
        x, y = _pair(f"{name}[{index}]", point)
        if not (0 <= x <= width and 0 <= y <= height):
            raise BadRequest(f"{name}[{index}] = ({x:g}, {y:g}) lies outside the {width}x{height} image")
        points.append((x, y))
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def _box(value: Any, width: int, height: int) -> np.ndarray | None:
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    flat = value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        flat = [*_pair("obj_bbox[0]", value[0]), *_pair("obj_bbox[1]", value[1])]
    if not isinstance(flat, (list, tuple)) or len(flat) != 4:
        raise BadRequest(f"'obj_bbox' must be [[x1, y1], [x2, y2]], got {value!r}")
    x1, y1 = _pair("obj_bbox", flat[:2])
    x2, y2 = _pair("obj_bbox", flat[2:])
    box = np.array([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], dtype=np.float32)
    box = box.clip(0, [width, height, width, height])
    if box[2] <= box[0] or box[3] <= box[1]:
        raise BadRequest(f"'obj_bbox' {value!r} does not overlap the {width}x{height} image")
    return box


def _pair(name: str, value: Any) -> tuple[float, float]:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        return float(value[0]), float(value[1])
    raise BadRequest(f"{name} must be a pair of finite numbers [x, y], got {value!r}")
