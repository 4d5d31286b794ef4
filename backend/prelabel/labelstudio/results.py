"""Label Studio results written: Regions and video tracks -> prediction result items (percent coordinates, review
notes, uncertainty signals), and failed predictions. Reading them back is :mod:`prelabel.labelstudio.result_items`."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from prelabel.core.features import feature_dict
from prelabel.core.model_version import PATTERN as MODEL_VERSION
from prelabel.core.regions import Regions
from prelabel.core.uncertainty import EXPLORE_WEIGHT, candidate_mask, region_confidence, task_score
from prelabel.core.video import Tracks, thin_keyframes
from prelabel.labelstudio.brush import mask_to_brush_rle
from prelabel.labelstudio.config import Control, LabelConfig
from prelabel.labelstudio.coordinates import PercentFrame


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
    frame = PercentFrame(*regions.image_size)
    if control.tag == "RectangleLabels":
        x, y, w, h = (float(v) for v in frame.box_to_percent(regions.boxes_xyxy[i]))
        return {"x": x, "y": y, "width": w, "height": h, "rotation": 0}
    if regions.masks is None or not regions.masks.crops[i].any():
        return None
    if control.tag == "PolygonLabels":
        polygons = regions.masks.polygons(i, tolerance=tolerance, max_vertices=max_vertices)
        if not polygons:
            return None
        return {"points": frame.to_percent(polygons[0]).round(3).tolist(), "closed": True}
    return {"format": "rle", "rle": mask_to_brush_rle(regions.masks[i])}  # Label Studio's format is full-frame


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
    frame_size = PercentFrame(*info.size)
    ls_fps = config.framerate or LS_DEFAULT_FRAMERATE
    ratio = ls_fps / info.fps if info.fps > 0 else 1.0
    frames_count = max(1, round(info.frame_count * ratio))
    results: list[dict[str, Any]] = []
    for control in config.controls:
        for track in tracks.tracks:
            label = tracks.label_names[track.label_id]
            if label not in control.labels or not len(track):
                continue
            percent = frame_size.box_to_percent(track.boxes_array).clip(0, 100)
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
