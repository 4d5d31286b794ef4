"""Reading what Label Studio stores and sends back: result items, parsed once and checked (annotations,
predictions, smart-tool context, video tracks), and which of a task's predictions is prelabel's newest.

Every reader of a result item (the predictor's smart tools, the webhooks, ranking, auto-accept, QA) goes through
:func:`parse_items`; coordinates go through :class:`~prelabel.labelstudio.coordinates.PercentFrame`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import mask_to_box, polygon_to_mask
from prelabel.core.parsing import finite, integer
from prelabel.core.shapes import Shape
from prelabel.core.uncertainty import EXPLORE_WEIGHT
from prelabel.labelstudio.brush import brush_rle_to_mask
from prelabel.labelstudio.config import OUTPUT_TAGS
from prelabel.labelstudio.coordinates import PercentFrame

SHAPE_TYPES = frozenset(OUTPUT_TAGS.values())  # rectanglelabels, polygonlabels, brushlabels
OUR_VERSION_PREFIX = "prelabel"  # every model_version prelabel writes starts so (core.model_version)


class ResultError(PrelabelError):
    """A Label Studio result item that is not valid for its type; the message names the item and the field."""


@dataclass(frozen=True)
class ResultItem:
    """One result item: its type, control, labels, score and prelabel's signals, read and checked once; its
    geometry (:meth:`box`, :meth:`point`, :meth:`polygon`, :meth:`mask`, :meth:`last_keyframe`) in pixels, checked
    when asked for."""

    raw: dict[str, Any]
    ref: str  # where the item is: "<where>result <id or position>"
    type: str
    from_name: str
    to_name: str
    labels: tuple[str, ...]  # value.<type> (value.labels for a videorectangle)
    frame: PercentFrame | None  # the pixels its percentages are of; None when the item gives no valid size
    score: float | None
    is_positive: bool  # a smart-tool click or box: False for a negative one (Alt-click)
    features: dict[str, Any] | None  # prelabel's uncertainty signals (and an exploration candidate's weight)
    candidate: bool  # an exploration candidate (below the threshold)
    machine_accepted: bool  # made by `prelabel accept`, not by a person

    @property
    def id(self) -> str:
        return str(self.raw.get("id", "?"))

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None

    @property
    def value(self) -> dict[str, Any]:
        value = self.raw.get("value")
        return value if isinstance(value, dict) else {}

    def malformed(self, what: str) -> ResultError:
        return ResultError(f"result item {self.id!r} ({self.type}) is malformed: {what}")

    def _frame(self) -> PercentFrame:
        if self.frame is None:
            raise self.malformed("original_width and original_height must be positive whole numbers")
        return self.frame

    def box(self) -> np.ndarray:
        """The tight pixel box ``[x1, y1, x2, y2]``: of a rectangle (rotated around its top-left corner, as Label
        Studio does), a polygon or a brush mask."""
        if self.type == "polygonlabels":
            return _bounds(self.polygon())
        if self.type == "brushlabels":
            return mask_to_box(self.mask())
        frame = self._frame()
        x, y, w, h = (finite(self.value.get(k)) for k in ("x", "y", "width", "height"))
        rotation = finite(self.value.get("rotation") or 0)
        if x is None or y is None or w is None or h is None or rotation is None:
            raise self.malformed(f"value.x, y, width, height (and rotation) must be numbers (numeric percentages of "
                                 f"the image), got {self.value!r}")
        theta = np.deg2rad(rotation)
        turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        corners = frame.to_pixels([[0, 0], [w, 0], [w, h], [0, h]]) @ turn.T + frame.to_pixels([x, y])
        return np.concatenate([corners.min(axis=0), corners.max(axis=0)])

    def point(self) -> np.ndarray:
        """A keypoint's pixel ``[x, y]``."""
        x, y = finite(self.value.get("x")), finite(self.value.get("y"))
        if x is None or y is None:
            raise self.malformed(f"value.x and y must be numbers (numeric percentages of the image), got "
                                 f"{self.value!r}")
        return self._frame().to_pixels([x, y])

    def polygon(self) -> np.ndarray:
        """A polygon's pixel vertices ``(K, 2)``."""
        points = self.value.get("points")
        pairs = [[finite(v) for v in point] for point in points if isinstance(point, list)] \
            if isinstance(points, list) else []
        if not isinstance(points, list) or len(pairs) != len(points) or \
                any(len(pair) != 2 or None in pair for pair in pairs):
            raise self.malformed("value.points must be a list of [x, y] number pairs")
        return self._frame().to_pixels(np.asarray(pairs, dtype=np.float64).reshape(-1, 2))

    def mask(self, polygon: np.ndarray | None = None) -> np.ndarray:
        """A polygon's (``polygon``, when already read) or a brush's bool ``(H, W)`` mask."""
        frame = self._frame()
        width, height = int(frame.width), int(frame.height)
        if self.type == "polygonlabels":
            return polygon_to_mask(self.polygon() if polygon is None else polygon, width, height)
        mask = brush_rle_to_mask(self.value.get("rle"), width, height)
        if mask is None:
            raise self.malformed(f"value.rle must be Label Studio's brush RLE of a {width}x{height} image")
        return mask

    def last_keyframe(self) -> tuple[int, np.ndarray]:
        """A videorectangle's last keyframe: its (1-based) frame and percent ``[x, y, width, height]``."""
        sequence = self.value.get("sequence")
        keyframes = [(integer(k.get("frame")), [finite(k.get(n)) for n in ("x", "y", "width", "height")])
                     for k in (sequence if isinstance(sequence, list) else []) if isinstance(k, dict)]
        if not keyframes or any(frame is None or None in box for frame, box in keyframes):
            raise self.malformed(f"value.sequence needs keyframes with numeric frame/x/y/width/height, got "
                                 f"{sequence!r}")
        frame, box = max(keyframes, key=lambda keyframe: keyframe[0])
        return int(frame), np.asarray(box, dtype=np.float64)

    def shape(self, clip: bool = True) -> Shape:
        """A rectangle, polygon or brush as a :class:`Shape`; ``clip=False`` keeps a box that leaves the image as
        drawn (for QA)."""
        frame = self._frame()
        if self.label is None:
            raise self.malformed(f"value.{self.type} must be a list holding the label")
        polygon = mask = None
        if self.type == "polygonlabels":
            polygon = self.polygon()
            mask, box = self.mask(polygon), _bounds(polygon)
        elif self.type == "brushlabels":
            mask = self.mask()
            box = mask_to_box(mask)
        else:
            box = self.box()
        width, height = int(frame.width), int(frame.height)
        box = (np.clip(box, 0, [width, height, width, height]) if clip else np.asarray(box)).astype(np.float32)
        return Shape(self.label, box, (width, height), mask, polygon, self.score, self.features, self.from_name,
                     self.ref)


def _bounds(polygon: np.ndarray) -> np.ndarray:
    return np.concatenate([polygon.min(axis=0), polygon.max(axis=0)]) if len(polygon) else np.zeros(4)


def parse_item(item: dict[str, Any], ref: str, frame: PercentFrame | None = None) -> ResultItem:
    """One result item; ``frame`` (the image's actual size) overrides its ``original_width``/``height``."""
    kind = str(item.get("type", ""))
    value = item.get("value") if isinstance(item.get("value"), dict) else {}
    labels = value.get("labels" if kind == "videorectangle" else kind)
    if frame is None:
        width, height = integer(item.get("original_width")), integer(item.get("original_height"))
        frame = PercentFrame(width, height) if width and height and width > 0 and height > 0 else None
    score = finite(item.get("score"))
    extra = item.get("prelabel") if isinstance(item.get("prelabel"), dict) else {}
    features = extra.get("features") if isinstance(extra.get("features"), dict) else None
    candidate = bool(extra.get("candidate"))
    if candidate:  # an exploration candidate: its weight goes along
        features = {**(features or {}), EXPLORE_WEIGHT: finite(extra.get(EXPLORE_WEIGHT)) or 1.0}
    parsed = ResultItem(item, ref, kind, str(item.get("from_name", "")), str(item.get("to_name", "")),
                        tuple(str(label) for label in labels) if isinstance(labels, list) else (), frame, score,
                        item.get("is_positive") is not False, features, candidate, bool(extra.get("machine_accepted")))
    if item.get("score") is not None and score is None:
        raise parsed.malformed(f"score must be a number, got {item.get('score')!r}")
    return parsed


def parse_items(results: Any, types: Iterable[str] | None = SHAPE_TYPES, where: str = "",
                frame: PercentFrame | None = None) -> list[ResultItem]:
    """The items of ``types`` (all, with None) in a ``result`` list; other entries are skipped. ``where`` prefixes
    each item's ``ref``; ``frame`` overrides the items' own size (see :func:`parse_item`)."""
    wanted = None if types is None else frozenset(types)
    return [parse_item(item, f"{where}result {item.get('id', number)}", frame)
            for number, item in enumerate(results if isinstance(results, list) else [])
            if isinstance(item, dict) and (wanted is None or item.get("type") in wanted)]


def result_shapes(results: Sequence[Any], where: str = "", clip: bool = True) -> list[Shape]:
    """The rectangle, polygon and brush items of a prediction's or annotation's ``result`` list as shapes.

    Other item types (choices, keypoints, relations) are skipped; a malformed shape item raises
    :class:`ResultError` naming the item. ``where`` prefixes each shape's ``ref``; ``clip=False`` keeps boxes
    that leave the image as drawn (for QA).
    """
    return [item.shape(clip) for item in parse_items(results, SHAPE_TYPES, where)]


def task_predictions(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The predictions a task carries (``/predict`` tasks and API task listings include them)."""
    predictions = task.get("predictions")
    return [p for p in predictions if isinstance(p, dict)] if isinstance(predictions, list) else []


def is_ours(prediction: dict[str, Any]) -> bool:
    """Whether prelabel made the prediction (its ``model_version`` is one of ours)."""
    return str(prediction.get("model_version") or "").startswith(OUR_VERSION_PREFIX)


def newest(predictions: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest prediction: the latest ``created_at``, then the highest id; among equals (a tasks file has
    neither) the last in the list."""
    if not predictions:
        return None
    ranked = [(str(p.get("created_at") or ""), p.get("id") if isinstance(p.get("id"), int) else 0, position)
              for position, p in enumerate(predictions)]
    return predictions[max(range(len(predictions)), key=ranked.__getitem__)]


def our_newest_prediction(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's newest prelabel prediction: the one ranking, auto-accept and review work from."""
    return newest([p for p in task_predictions(task) if is_ours(p)])
