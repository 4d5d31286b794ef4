"""CVAT tracker functions (``type: tracker``): ``{image, shapes, states}`` -> ``{shapes, states}``.

CVAT's lambda manager signs each returned state, hands it to the browser and sends it back with the next frame;
consecutive calls may reach different Nuclio workers, so a state carries everything needed to continue: the
object's box and the previous frame (JPEG, downscaled to the tracker's input side). Each call then runs the
tracker (SAM 2 video, or any :class:`~prelabel.models.protocols.Tracker`) over two frames, previous -> current,
prompted with the previous box: objects that share a previous frame are tracked in one call.

Shapes are rectangles as CVAT's UI sends them: flat ``[x1, y1, x2, y2]`` in pixels. A lost object keeps its
last box (CVAT expects one shape per object, never NaN) and its state says ``lost``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from prelabel.core.errors import BadRequest
from prelabel.core.parsing import finite, parsed
from prelabel.models.protocols import Tracker

STATE_VERSION = 1


@dataclass(frozen=True)
class TrackerFunction:
    """The tracker handler core; ``max_side`` bounds the frame kept in each state (pixels)."""

    tracker: Tracker
    max_side: int = 1024
    jpeg_quality: int = 90

    def __call__(self, body: Mapping[str, Any], image: np.ndarray) -> dict[str, Any]:
        shapes = body.get("shapes") or []
        states = body.get("states") or []
        if not isinstance(shapes, list) or not isinstance(states, list):
            raise BadRequest("'shapes' and 'states' must be lists (CVAT sends one entry per tracked object)")
        height, width = image.shape[:2]
        boxes = [_box(shape, width, height, i) for i, shape in enumerate(shapes)]
        frame_b64, scale = self._encode(image)
        out_boxes: list[list[float]] = [list(b) for b in boxes]
        lost = [False] * len(boxes)
        groups: dict[str, list[int]] = {}
        for i in range(len(boxes)):
            state = states[i] if i < len(states) else None
            if state is None:
                continue  # (re-)initialised on this frame: the drawn box is the answer
            if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION or "frame" not in state:
                raise BadRequest(f"tracker state {i} is not one this function returned; re-initialise the track")
            groups.setdefault(str(state["frame"]), []).append(i)
        for frame_text, members in groups.items():
            previous = self._decode(frame_text, (width, height))
            first_state = states[members[0]]
            seeds = np.array([states[i]["box"] for i in members], dtype=np.float32)
            if tuple(first_state.get("size", (width, height))) != (width, height):
                raise BadRequest("the frame size changed between tracker calls; re-initialise the track")
            tracked, scores = next(iter(self.tracker.track([previous, image], seeds)))
            for row, i in enumerate(members):
                if scores[row] >= 0.5:
                    out_boxes[i] = _clip(tracked[row], width, height)
                else:
                    out_boxes[i] = list(states[i]["box"])
                    lost[i] = True
        new_states = [{"v": STATE_VERSION, "box": [round(v, 2) for v in out_boxes[i]], "size": [width, height],
                       "scale": scale, "frame": frame_b64, "lost": lost[i]} for i in range(len(boxes))]
        return {"shapes": [[round(float(v), 2) for v in b] for b in out_boxes], "states": new_states}

    def _encode(self, image: np.ndarray) -> tuple[str, float]:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(width, height))
        small = image if scale == 1.0 else cv2.resize(image, (round(width * scale), round(height * scale)),
                                                      interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise BadRequest("could not encode the frame for the tracker state")
        return base64.b64encode(data.tobytes()).decode("ascii"), scale

    @staticmethod
    def _decode(text: str, size: tuple[int, int]) -> np.ndarray:
        data = parsed(base64.b64decode, text)
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            raise BadRequest("tracker state holds no readable frame; re-initialise the track")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image if (image.shape[1], image.shape[0]) == size else cv2.resize(image, size)


def _box(shape: Any, width: int, height: int, index: int) -> list[float]:
    """A rectangle from CVAT's flat ``[x1, y1, x2, y2]`` (more points: their bounding box)."""
    if not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) < 4 or len(shape) % 2:
        raise BadRequest(f"shape {index} must be a flat list of x, y pixel coordinates like [x1, y1, x2, y2]")
    coordinates = [finite(v) for v in shape]
    if None in coordinates:
        raise BadRequest(f"shape {index} holds non-numeric, NaN or infinite coordinates: {list(shape)!r}")
    points = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    return _clip([*points.min(axis=0), *points.max(axis=0)], width, height)


def _clip(box: Sequence[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    return [x1, y1, x2, y2]
