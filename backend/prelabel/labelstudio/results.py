"""Label Studio results both ways: Regions -> prediction result items (percent coordinates), and result
items -> :class:`~prelabel.core.shapes.Shape` (rotation, polygons and brushes included)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.features import feature_dict
from prelabel.core.geometry import mask_to_box, polygon_to_mask
from prelabel.core.model_version import PATTERN as MODEL_VERSION
from prelabel.core.parsing import finite, integer
from prelabel.core.regions import Regions
from prelabel.core.shapes import Shape
from prelabel.core.uncertainty import EXPLORE_WEIGHT, candidate_mask, region_confidence, task_score
from prelabel.core.video import Tracks, thin_keyframes
from prelabel.labelstudio.config import OUTPUT_TAGS, Control, LabelConfig


def regions_to_results(
    regions: Regions,
    config: LabelConfig,
    review_threshold: float = 0.0,
    polygon_tolerance: float = 0.01,
    max_vertices: int = 100,
) -> list[dict[str, Any]]:
    """Label Studio result items for every control tag, each region carrying a label from that tag.

    Each item's ``score`` is the region's confidence; regions below ``review_threshold`` carry the region
    note (``meta.text``) "prelabel: review", which annotators see and search in the region list. The
    ``prelabel`` key keeps the region's uncertainty signals, so feedback from the annotation that started
    from this prediction can be learned from (Label Studio stores prediction results verbatim).
    Exploration candidates (below-threshold detections, :mod:`prelabel.pipeline.exploration`) carry the note
    "prelabel: candidate" instead, and ``prelabel.candidate: true`` with their ``explore_weight``.
    """
    width, height = regions.image_size
    confidence = region_confidence(regions)
    candidates = candidate_mask(regions)
    weights = regions.data.get(EXPLORE_WEIGHT)
    results: list[dict[str, Any]] = []
    for control in config.controls:
        for i in range(len(regions)):
            label = regions.label_names[int(regions.label_ids[i])]
            if label not in control.labels:
                continue
            value = _value(regions, i, control, polygon_tolerance, max_vertices)
            if value is None:
                continue
            value[control.result_type] = [label]
            item: dict[str, Any] = {
                "id": f"{control.name}_{i}",
                "from_name": control.name,
                "to_name": control.to_name,
                "type": control.result_type,
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "score": round(float(confidence[i]), 4),
                "value": value,
            }
            if candidates[i]:
                item["meta"] = {"text": [f"{CANDIDATE_NOTE} (below the threshold, score {regions.scores[i]:.2f}): "
                                         "keep it if right, delete it if not"]}
            elif confidence[i] < review_threshold:
                item["meta"] = {"text": [f"{REVIEW_NOTE} (confidence {confidence[i]:.2f})"]}
            if regions.features is not None:
                item["prelabel"] = {"region": i, "features": feature_dict(regions.features[i])}
            if candidates[i]:
                item["prelabel"] = {**item.get("prelabel", {"region": i}), "candidate": True,
                                    EXPLORE_WEIGHT: round(float(weights[i]), 4)}
            results.append(item)
    return results


REVIEW_NOTE = "prelabel: review"
CANDIDATE_NOTE = "prelabel: candidate"  # also what the Data Manager tab filters on (predictions_results contains)


def _value(regions: Regions, i: int, control: Control, tolerance: float, max_vertices: int) -> dict[str, Any] | None:
    width, height = regions.image_size
    if control.tag == "RectangleLabels":
        x1, y1, x2, y2 = (float(v) for v in regions.boxes_xyxy[i])
        return {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                "height": 100 * (y2 - y1) / height, "rotation": 0}
    if regions.masks is None or not regions.masks.crops[i].any():
        return None
    if control.tag == "PolygonLabels":
        polygons = regions.masks.polygons(i, tolerance=tolerance, max_vertices=max_vertices)
        if not polygons:
            return None
        points = polygons[0] / np.array([width, height], dtype=np.float32) * 100
        return {"points": points.round(3).tolist(), "closed": True}
    return {"format": "rle", "rle": mask_to_brush_rle(regions.masks[i])}  # Label Studio's format is full-frame


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a bool mask (label_studio_sdk's codec; the ``[labelstudio]`` extra)."""
    from label_studio_sdk.converter.brush import mask2rle  # optional: the [labelstudio] extra, ~1 s to import

    return [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]


def preload_brush_codec() -> None:
    """Import label_studio_sdk's brush codec now, if installed: its package imports the whole converter (~1 s),
    which would otherwise land in a server's first answer with a brush."""
    if importlib.util.find_spec("label_studio_sdk"):
        importlib.import_module("label_studio_sdk.converter.brush")


def brush_rle_to_mask(rle: Any, width: int, height: int) -> np.ndarray | None:
    """Decode Label Studio's brush RLE into a bool ``(H, W)`` mask; ``None`` when ``rle`` is not the RLE of a
    ``width`` x ``height`` RGBA image (checked from its header before anything is allocated)."""
    from label_studio_sdk.converter.brush import decode_rle  # optional: the [labelstudio] extra, ~1 s to import

    if not isinstance(rle, list) or len(rle) < 4 or not all(isinstance(v, int) and 0 <= v < 256 for v in rle):
        return None
    if int.from_bytes(bytes(rle[:4]), "big") != width * height * 4:  # the header's value count
        return None
    try:
        values = decode_rle(rle)
    except (ValueError, IndexError, OverflowError):  # label_studio_sdk's decoder on a corrupt stream, nothing else
        return None
    return values.reshape(height, width, 4)[:, :, 3] > 0


def result_shapes(results: Sequence[Any], where: str = "", clip: bool = True) -> list[Shape]:
    """The rectangle, polygon and brush items of a prediction's or annotation's ``result`` list.

    Other item types (choices, keypoints, relations) are skipped; a malformed shape item raises
    :class:`ResultError` naming the item. ``where`` prefixes each shape's ``ref``; ``clip=False`` keeps boxes
    that leave the image as drawn (for QA).
    """
    shapes = []
    for number, item in enumerate(results):
        if not isinstance(item, dict) or item.get("type") not in OUTPUT_TAGS.values():
            continue
        shapes.append(_shape(item, f"{where}result {item.get('id', number)}", clip))
    return shapes


class ResultError(PrelabelError):
    """A Label Studio result item that is not a valid rectangle, polygon or brush."""


def _shape(item: dict[str, Any], ref: str, clip: bool) -> Shape:
    def malformed(what: str) -> ResultError:
        return ResultError(f"result item {item.get('id', '?')!r} ({item.get('type')}) is malformed: {what}")

    width, height = integer(item.get("original_width")), integer(item.get("original_height"))
    if width is None or height is None or width <= 0 or height <= 0:
        raise malformed("original_width and original_height must be positive whole numbers")
    value, kind = item.get("value"), item["type"]
    labels = value.get(kind) if isinstance(value, dict) else None
    if not isinstance(labels, list) or not labels:
        raise malformed(f"value.{kind} must be a list holding the label")
    label = str(labels[0])
    mask = polygon = None
    if kind == "rectanglelabels":
        x, y, w, h = (finite(value.get(k)) for k in ("x", "y", "width", "height"))
        rotation = finite(value.get("rotation") or 0)
        if x is None or y is None or w is None or h is None or rotation is None:
            raise malformed("value.x, y, width, height (and rotation) must be numbers")
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        theta = np.deg2rad(rotation)  # Label Studio rotates around (x, y)
        turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        corners = (corners * [width / 100, height / 100]) @ turn.T + [x * width / 100, y * height / 100]
        box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
    elif kind == "polygonlabels":
        points = value.get("points")
        pairs = [[finite(v) for v in point] for point in points if isinstance(point, list)] \
            if isinstance(points, list) else []
        if not isinstance(points, list) or len(pairs) != len(points) or \
                any(len(pair) != 2 or None in pair for pair in pairs):
            raise malformed("value.points must be a list of [x, y] number pairs")
        polygon = np.asarray(pairs, dtype=np.float64).reshape(-1, 2) * [width / 100, height / 100]
        mask = polygon_to_mask(polygon, width, height)
        box = np.concatenate([polygon.min(axis=0), polygon.max(axis=0)]) if len(polygon) else np.zeros(4)
    else:
        mask = brush_rle_to_mask(value.get("rle"), width, height)
        if mask is None:
            raise malformed(f"value.rle must be Label Studio's brush RLE of a {width}x{height} image")
        box = mask_to_box(mask)
    box = (np.clip(box, 0, [width, height, width, height]) if clip else np.asarray(box)).astype(np.float32)
    extra = item.get("prelabel")
    features = extra.get("features") if isinstance(extra, dict) else None
    features = features if isinstance(features, dict) else None
    if isinstance(extra, dict) and extra.get("candidate"):  # an exploration candidate: its weight goes along
        features = {**(features or {}), EXPLORE_WEIGHT: finite(extra.get(EXPLORE_WEIGHT)) or 1.0}
    score = finite(item.get("score"))
    if item.get("score") is not None and score is None:
        raise malformed(f"score must be a number, got {item.get('score')!r}")
    return Shape(label, box, (width, height), mask, polygon, score, features, str(item.get("from_name", "")), ref)


def prediction(regions: Regions, config: LabelConfig, model_version: str, review_threshold: float) -> dict[str, Any]:
    """One task's prediction as Label Studio stores it: the task score (its least confident region) and the
    result items, with review notes below ``review_threshold`` and the uncertainty signals."""
    return {"model_version": model_version, "score": round(task_score(regions), 4),
            "result": regions_to_results(regions, config, review_threshold)}


FAILED = " failed: "  # joins our model_version and the kind of failure in a failed task's model_version
_FAILED_VERSION = re.compile(rf"{MODEL_VERSION.pattern}{FAILED}.+")


def failed_prediction(model_version: str, kind: str, reason: str) -> dict[str, Any]:
    """A task that could not be pre-labeled, as Label Studio stores it: no regions and a ``model_version`` that
    names the failure (``prelabel-… failed: image URL refused``), seen in the Data Manager's "Prediction model
    versions" column and its filters. It differs from the version /setup reports, so the next "Retrieve
    Predictions" sends the task again; ``error`` (the whole reason) is for API clients, Label Studio drops it."""
    return {"model_version": f"{model_version}{FAILED}{kind}", "score": 0.0, "result": [], "error": reason}


def is_failed_version(model_version: Any) -> bool:
    """Whether a stored prediction's ``model_version`` is one of :func:`failed_prediction`'s."""
    return isinstance(model_version, str) and _FAILED_VERSION.fullmatch(model_version) is not None


LS_DEFAULT_FRAMERATE = 24.0  # <Video framerate> when the config does not set it (Label Studio's default)


def tracks_to_results(tracks: Tracks, config: LabelConfig, tolerance: float = 0.5,
                      review_threshold: float = 0.0) -> list[dict[str, Any]]:
    """One ``videorectangle`` item per track and VideoRectangle control: keyframes thinned so that Label Studio's
    linear interpolation between them stays within ``tolerance`` percent of the frame on every frame.

    Frames are numbered as Label Studio does (1-based, at the config's ``framerate``); a keyframe before a gap
    or at the end of a track has ``enabled: false``, which ends the track there.
    """
    info = tracks.info
    width, height = info.size
    ls_fps = config.framerate or LS_DEFAULT_FRAMERATE
    ratio = ls_fps / info.fps if info.fps > 0 else 1.0
    frames_count = max(1, round(info.frame_count * ratio))
    results: list[dict[str, Any]] = []
    for control in config.controls:
        for track in tracks.tracks:
            label = tracks.label_names[track.label_id]
            if label not in control.labels or not len(track):
                continue
            boxes = track.boxes_array.astype(np.float64)
            percent = np.stack([100 * boxes[:, 0] / width, 100 * boxes[:, 1] / height,
                                100 * (boxes[:, 2] - boxes[:, 0]) / width,
                                100 * (boxes[:, 3] - boxes[:, 1]) / height], axis=1).clip(0, 100)
            sequence: list[dict[str, Any]] = []
            frames = np.asarray(track.frames)
            runs = np.split(np.arange(len(frames)), np.flatnonzero(np.diff(frames) > 1) + 1)
            for run in runs:
                kept = [run[i] for i in thin_keyframes(frames[run].tolist(), percent[run], tolerance)]
                for number, i in enumerate(kept):
                    frame = min(frames_count, int(round(frames[i] * ratio)) + 1)
                    if sequence and sequence[-1]["frame"] >= frame:
                        continue  # two video frames on one Label Studio frame (a lower framerate): keep the first
                    x, y, w, h = (round(float(v), 4) for v in percent[i])
                    sequence.append({"frame": frame, "enabled": number < len(kept) - 1, "x": x, "y": y,
                                     "width": w, "height": h, "rotation": 0, "time": round(frame / ls_fps, 4)})
                if sequence:
                    sequence[-1]["enabled"] = False
            score = round(float(track.score), 4)
            item: dict[str, Any] = {
                "id": f"{control.name}_t{track.track_id}",
                "from_name": control.name, "to_name": control.to_name, "type": control.result_type,
                "origin": "prediction", "score": score,
                "value": {"framesCount": frames_count, "duration": round(info.duration, 4), "labels": [label],
                          "sequence": sequence},
                "prelabel": {"track_id": track.track_id, "keyframes_detected": int(sum(track.detected)),
                             "frames": len(track)},
            }
            if score < review_threshold:
                item["meta"] = {"text": [f"{REVIEW_NOTE} (confidence {score:.2f})"]}
            results.append(item)
    return results


def video_prediction(tracks: Tracks, config: LabelConfig, model_version: str, review_threshold: float,
                     tolerance: float = 0.5) -> dict[str, Any]:
    """One video task's prediction: the score is its least confident track's (1.0 with no track, as for images
    with no region)."""
    results = tracks_to_results(tracks, config, tolerance, review_threshold)
    score = min((r["score"] for r in results), default=1.0)
    return {"model_version": model_version, "score": round(float(score), 4), "result": results}
