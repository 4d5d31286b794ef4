"""Label Studio predict requests -> Labeler -> Label Studio results; no HTTP framework in here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from prelabel.core.errors import BadRequest, PrelabelError
from prelabel.core.fetch import FetchRefused
from prelabel.core.geometry import mask_to_box
from prelabel.core.images import ImageError
from prelabel.core.parsing import finite, integer
from prelabel.core.regions import Regions
from prelabel.core.scoring import Scoring
from prelabel.core.video import VideoError, VideoSource
from prelabel.feedback.fit import Learned
from prelabel.labelstudio.client import LabelStudioAccess
from prelabel.labelstudio.config import CONTEXT_TAGS, LabelConfig, parse_label_config
from prelabel.labelstudio.results import (
    LS_DEFAULT_FRAMERATE,
    failed_prediction,
    is_failed_version,
    prediction,
    regions_to_results,
    tracks_to_results,
    video_prediction,
)
from prelabel.labelstudio.task_images import ImageFetchError, TaskImageFetcher
from prelabel.pipeline import Exploration, Labeler
from prelabel.pipeline.video import VideoConfig, VideoDeadline, VideoLabeler
from prelabel.settings import Settings

RESUME_KEY = "_prelabel_resume"  # a deferred video task carries the state reached, to finish in the background

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOutcome:
    """Results in task order (deferred tasks get an item without ``result``) and the deferred tasks."""

    results: list[dict[str, Any]]
    deferred: list[dict[str, Any]]


@dataclass(frozen=True)
class VideoOptions:
    """How video tasks are pre-labeled (from the PRELABEL_VIDEO_* settings)."""

    config: VideoConfig = VideoConfig()
    tolerance: float = Settings.video_tolerance  # every default is the Settings' own
    fps: float = Settings.video_fps
    max_bytes: int = Settings.max_video_bytes
    max_frames: int = Settings.max_video_frames
    propagate_frames: int = Settings.video_propagate_frames  # a drawn box is tracked this many frames forward

    @classmethod
    def from_settings(cls, settings: Any) -> VideoOptions:
        return cls(VideoConfig.from_settings(settings), settings.video_tolerance, settings.video_fps,
                   settings.max_video_bytes, settings.max_video_frames, settings.video_propagate_frames)


class LabelStudioPredictor:
    """Turns Label Studio tasks into predictions with one shared :class:`Labeler`.

    ``learned`` (the project's latest fit) supplies per-label thresholds and the confidence calibration;
    ``explore`` adds below-threshold candidates to each prediction (``PRELABEL_EXPLORE_SHARE``).
    """

    def __init__(
        self,
        labeler: Labeler,
        fetcher: TaskImageFetcher,
        prompt_map: dict | None = None,
        review_threshold: float = 0.0,
        learned: Learned | None = None,
        explore: Exploration | None = None,
        video: VideoOptions | None = None,
    ) -> None:
        self.labeler = labeler
        self.fetcher = fetcher
        self.prompt_map = prompt_map or {}
        self.review_threshold = review_threshold
        self.learned = learned
        self.explore = explore
        self.video = video or VideoOptions()

    def config(self, label_config: str) -> LabelConfig:
        config = parse_label_config(label_config, self.prompt_map)
        return replace(config, prompts=self.learned.apply(config.prompts)) if self.learned else config

    @property
    def calibration(self) -> Scoring | None:
        return self.learned.scoring() if self.learned else None

    def model_version(self, config: LabelConfig) -> str:
        if config.is_video:
            return self.video_labeler().model_version(config.prompts, self.calibration)
        return self.labeler.model_version(config.prompts, self.calibration, self.explore)

    def video_labeler(self) -> VideoLabeler:
        return VideoLabeler(self.labeler, self.video.config)

    def predict_tasks(
        self,
        tasks: list[dict[str, Any]],
        config: LabelConfig,
        access: LabelStudioAccess | None,
        deadline: float | None = None,
    ) -> PredictOutcome:
        """One result per task. Past ``deadline`` (a ``time.monotonic()`` value) the rest are deferred."""
        results, deferred = [], []
        for task in tasks:
            if deadline is not None and time.monotonic() > deadline:
                deferred.append(task)
                # No "result" key: Label Studio skips this item and stores nothing for the task.
                results.append({"model_version": self.model_version(config), "deferred": True})
                continue
            if config.is_video:
                try:
                    results.append(self.predict_task(task, config, access, deadline))
                except VideoDeadline as stop:  # the rest of this video is finished in the background
                    deferred.append({**task, RESUME_KEY: stop.state})
                    results.append({"model_version": self.model_version(config), "deferred": True})
                continue
            results.append(self.predict_task(task, config, access))
        return PredictOutcome(results, deferred)

    def predict_task(self, task: dict[str, Any], config: LabelConfig, access: LabelStudioAccess | None,
                     deadline: float | None = None) -> dict:
        """The prediction for one task, or an item with an ``error`` (and no ``result``) when it fails.

        A video past ``deadline`` raises :class:`VideoDeadline` with the state reached."""
        version = self.model_version(config)
        if config.is_video:
            return self._predict_video(task, config, access, version, deadline)
        try:
            image = self._image(task, config, access)
        except PrelabelError as exc:  # the task's image: refused, unreachable, unreadable, too large, missing
            return failed(task, version, exc, "image")
        regions = self.labeler.predict(image, config.prompts, with_masks=config.needs_masks,
                                       calibration=self.calibration, explore=self.explore)
        return prediction(regions, config, version, self.review_threshold)

    def interactive(
        self, task: dict[str, Any], config: LabelConfig, context: dict[str, Any], access: LabelStudioAccess | None
    ) -> dict[str, Any]:
        """A mask from smart-tool clicks (KeyPointLabels) and/or a smart box (RectangleLabels); with boxes from
        an ``exemplar`` control, every similar instance of the box's label ("label one, find all", SAM 3); on a
        video, the annotator's boxes tracked forward (:meth:`propagate`)."""
        if config.is_video:
            return self.propagate(task, config, context, access)
        items = [c for c in context.get("result") or [] if isinstance(c, dict) and c.get("type") in CONTEXT_TAGS.values()]
        if not items:
            raise BadRequest("interactive context holds no keypointlabels or rectanglelabels result")
        image = self._image(task, config, access)
        height, width = image.shape[:2]
        names = [p.name for p in config.prompts]
        points, point_labels, box, label = [], [], None, None
        exemplars: dict[bool, list[np.ndarray]] = {True: [], False: []}
        for item in items:
            value = item.get("value") if isinstance(item.get("value"), dict) else {}
            numbers = [finite(value.get(k)) for k in ("x", "y")] + [finite(value.get(k, 0)) for k in ("width", "height")]
            if None in numbers:
                raise BadRequest(f"context result {item.get('id')!r} needs numeric value.x/y (and width/height for a "
                                 f"rectangle), got {value!r}")
            x, y, w, h = (n * size / 100 for n, size in zip(numbers, (width, height, width, height), strict=True))
            label = label or (value.get(item["type"]) or [None])[0]
            if item["type"] == "keypointlabels":
                points.append([x, y])
                point_labels.append(0 if item.get("is_positive") is False else 1)
            elif item.get("from_name") in config.exemplar_controls:
                exemplars[item.get("is_positive") is not False].append(np.array([x, y, x + w, y + h], np.float32))
            else:
                box = np.array([x, y, x + w, y + h], dtype=np.float32)
        if label is not None and label not in names:
            raise BadRequest(f"the label {label!r} is not in the labeling config ({', '.join(names)})")
        if exemplars[True] or exemplars[False]:
            return self._similar(image, config, label, exemplars)
        mask, score = self.labeler.click(image, np.array(points, dtype=np.float32).reshape(-1, 2),
                                         np.array(point_labels, dtype=np.int64), box)
        return {"model_version": self.model_version(config), "score": round(score, 4),
                "result": self._mask_results(mask, score, config, label)}

    def propagate(self, task: dict[str, Any], config: LabelConfig, context: dict[str, Any],
                  access: LabelStudioAccess | None) -> dict[str, Any]:
        """Each ``videorectangle`` in the context (what the annotator drew) tracked from its last keyframe for
        ``PRELABEL_VIDEO_PROPAGATE_FRAMES`` frames; the answer extends each region's own sequence, same id."""
        items = [c for c in context.get("result") or [] if isinstance(c, dict) and c.get("type") == "videorectangle"]
        if not items:
            raise BadRequest("interactive context on a video holds no videorectangle result")
        names = [p.name for p in config.prompts]
        starts, label_ids = [], []
        for item in items:
            value = item.get("value") if isinstance(item.get("value"), dict) else {}
            frame, box = _last_keyframe(value.get("sequence"))
            if frame is None:
                raise BadRequest(f"videorectangle {item.get('id')!r} has no keyframe with numeric frame/x/y/width/"
                                 f"height, got {value.get('sequence')!r}")
            label = (value.get("labels") or [names[0] if names else None])[0]
            if label not in names:
                raise BadRequest(f"the label {label!r} is not in the labeling config ({', '.join(names)})")
            starts.append((frame, box))
            label_ids.append(names.index(label))
        data = task.get("data")
        if not isinstance(data, dict) or config.image_key not in data:
            raise BadRequest(f"task {task.get('id')} has no data.{config.image_key} (the <Video> value)")
        path, temporary = self.fetcher.fetch_video(data[config.image_key], access, task.get("id"), self.video.max_bytes)
        try:
            source = VideoSource(path, self.video.fps, self.fetcher.max_pixels, self.video.max_frames)
            width, height = source.info.size
            ratio = (config.framerate or LS_DEFAULT_FRAMERATE) / source.info.fps if source.info.fps > 0 else 1.0
            results = []
            for item, (frame, (x, y, w, h)), label_id in zip(items, starts, label_ids):
                video_frame = min(source.info.frame_count - 1, max(0, round((frame - 1) / ratio)))
                box = np.array([[x * width / 100, y * height / 100, (x + w) * width / 100, (y + h) * height / 100]],
                               dtype=np.float32)
                tracks = self.video_labeler().propagate(source, video_frame, box, [label_id], names,
                                                        frames=self.video.propagate_frames)
                tracked = next((r for r in tracks_to_results(tracks, config, self.video.tolerance)
                                if r["from_name"] == item.get("from_name")), None)
                own = [k for k in item["value"]["sequence"] if isinstance(k, dict)]
                extra = [k for k in (tracked["value"]["sequence"] if tracked else []) if k["frame"] > frame]
                if own and extra:
                    own[-1] = {**own[-1], "enabled": True}  # the track now goes on past the drawn keyframe
                results.append({**item, "origin": "prediction", "value": {
                    **item["value"], "framesCount": tracked["value"]["framesCount"] if tracked else
                    item["value"].get("framesCount"), "sequence": own + extra}})
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        return {"model_version": self.video_labeler().model_version(config.prompts, self.calibration),
                "score": 1.0, "result": results}

    def _similar(self, image: np.ndarray, config: LabelConfig, label: str | None,
                 exemplars: dict[bool, list[np.ndarray]]) -> dict[str, Any]:
        """Every instance like the positive exemplar boxes (negative ones steer away), in the output controls."""
        if label is None or not exemplars[True]:
            raise BadRequest("an exemplar prompt needs at least one positive box with a label")
        negative = np.stack(exemplars[False]) if exemplars[False] else None
        regions = self.labeler.find_similar(image, config.prompts, label, np.stack(exemplars[True]), negative,
                                            self.calibration)
        return prediction(regions, config, self.model_version(config), self.review_threshold)

    @staticmethod
    def _mask_results(mask: np.ndarray, score: float, config: LabelConfig, label: str | None) -> list[dict]:
        """The clicked mask as brush/polygon results (the smart tool itself already drew the box)."""
        height, width = mask.shape
        names = [p.name for p in config.prompts]
        region = Regions(
            image_size=(width, height), label_names=names, boxes_xyxy=mask_to_box(mask)[None],
            scores=[min(max(score, 0.0), 1.0)], label_ids=[names.index(label) if label in names else 0],
            masks=mask[None], data={"mask_score": [1.0]},
        )
        mask_controls = tuple(c for c in config.controls if c.tag != "RectangleLabels")
        return regions_to_results(region, replace(config, controls=mask_controls))

    def _predict_video(self, task: dict[str, Any], config: LabelConfig, access: LabelStudioAccess | None,
                       version: str, deadline: float | None) -> dict:
        data = task.get("data")
        try:
            if not isinstance(data, dict) or config.image_key not in data:  # one bad task never fails its batch
                raise BadRequest(f"task {task.get('id')} has no data.{config.image_key} (the <Video> value)")
            path, temporary = self.fetcher.fetch_video(data[config.image_key], access, task.get("id"),
                                                       self.video.max_bytes)
        except PrelabelError as exc:
            return failed(task, version, exc, "video")
        try:
            try:
                source = VideoSource(path, self.video.fps, self.fetcher.max_pixels, self.video.max_frames)
            except VideoError as exc:
                return failed(task, version, exc, "video")
            tracks = self.video_labeler().prelabel(source, config.prompts, self.calibration,
                                                   resume=task.get(RESUME_KEY), deadline=deadline)
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        return video_prediction(tracks, config, version, self.review_threshold, self.video.tolerance)

    def _image(self, task: dict[str, Any], config: LabelConfig, access: LabelStudioAccess | None) -> np.ndarray:
        data = task.get("data")
        if not isinstance(data, dict) or config.image_key not in data:
            raise BadRequest(f"task {task.get('id')} has no data.{config.image_key} (the <Image> value)")
        return self.fetcher.fetch(data[config.image_key], access, task.get("id"))


def failed(task: dict[str, Any], version: str, exc: PrelabelError, medium: str) -> dict[str, Any]:
    """The answer for a task whose image or video failed: a failure Label Studio stores and shows
    (:func:`failed_prediction`), or, when the task shows that very failure already, an item without "result"
    (Label Studio then stores no second copy)."""
    log.warning("task %s not pre-labeled: %s", task.get("id"), exc)
    failure = failed_prediction(version, failure_kind(exc, medium), str(exc))
    if any(p.get("model_version") == failure["model_version"] for p in stored_predictions(task)):
        return {"model_version": failure["model_version"], "error": str(exc)}
    return failure


def failure_kind(exc: PrelabelError, medium: str = "image") -> str:
    """A short, fixed name of why a task's image or video failed: a few distinct model_versions, not one per URL."""
    if isinstance(exc, FetchRefused):
        return f"{medium} URL refused"
    if isinstance(exc, (ImageError, VideoError)) or isinstance(exc.__cause__, (ImageError, VideoError)):
        return f"{medium} unreadable or too large"
    if isinstance(exc, ImageFetchError):
        return f"{medium} not fetched"
    return f"no {medium} in the task"


def stored_predictions(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The predictions Label Studio sent with the task (``/predict`` tasks carry them)."""
    predictions = task.get("predictions")
    return [p for p in predictions if isinstance(p, dict)] if isinstance(predictions, list) else []


def stale_failures(task: dict[str, Any]) -> list[int]:
    """Ids of the task's stored failed predictions (:func:`failed_prediction`), once it has been pre-labeled."""
    return [int(p["id"]) for p in stored_predictions(task)
            if is_failed_version(p.get("model_version")) and isinstance(p.get("id"), int)]


def _last_keyframe(sequence: Any) -> tuple[int | None, list[float]]:
    """The frame and ``[x, y, width, height]`` of a ``videorectangle`` sequence's last keyframe, or ``None`` when
    the sequence is not a list of keyframes with numeric ``frame``/``x``/``y``/``width``/``height``."""
    keyframes = [(integer(k.get("frame")), [finite(k.get(n)) for n in ("x", "y", "width", "height")])
                 for k in (sequence if isinstance(sequence, list) else []) if isinstance(k, dict)]
    if not keyframes or any(frame is None or None in box for frame, box in keyframes):
        return None, []
    return max(keyframes, key=lambda keyframe: keyframe[0])
