"""Video tasks: tracks pre-labeled over the whole video (finished in the background past the deadline), and the
annotator's boxes tracked forward (the smart tool on a video)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prelabel.core.errors import BadRequest, PrelabelError
from prelabel.core.video import VideoError, VideoSource
from prelabel.labelstudio.client import LabelStudioAccess
from prelabel.labelstudio.config import LabelConfig
from prelabel.labelstudio.coordinates import PercentFrame
from prelabel.labelstudio.predict.failures import failed
from prelabel.labelstudio.predict.images import task_media
from prelabel.labelstudio.predict.setup import PredictorSetup
from prelabel.labelstudio.result_items import ResultItem
from prelabel.labelstudio.results import LS_DEFAULT_FRAMERATE, tracks_to_results, video_prediction

RESUME_KEY = "_prelabel_resume"  # a deferred video task carries the state reached, to finish in the background


def predict_video(setup: PredictorSetup, task: dict[str, Any], config: LabelConfig, access: LabelStudioAccess | None,
                  version: str, deadline: float | None) -> dict[str, Any]:
    """The task's tracks as a prediction, or a failure (``version`` is the request's) when its video fails.

    Past ``deadline`` raises :class:`~prelabel.pipeline.video.VideoDeadline` with the state reached."""
    try:
        path, temporary = setup.fetcher.fetch_video(task_media(task, config, "Video"), access, task.get("id"),
                                                    setup.video.max_bytes)
    except PrelabelError as exc:  # one bad task never fails its batch
        return failed(task, version, exc, "video")
    try:
        try:
            source = VideoSource(path, setup.video.fps, setup.fetcher.max_pixels, setup.video.max_frames)
        except VideoError as exc:
            return failed(task, version, exc, "video")
        tracks = setup.video_labeler().prelabel(source, config.prompts, setup.calibration,
                                                resume=task.get(RESUME_KEY), deadline=deadline)
    finally:
        if temporary:
            path.unlink(missing_ok=True)
    return video_prediction(tracks, config, tracks.meta["model_version"], setup.review_threshold,
                            setup.video.tolerance)


def propagate(setup: PredictorSetup, task: dict[str, Any], config: LabelConfig, items: Sequence[ResultItem],
              access: LabelStudioAccess | None, version: str) -> dict[str, Any]:
    """Each ``videorectangle`` the annotator drew, tracked from its last keyframe for
    ``PRELABEL_VIDEO_PROPAGATE_FRAMES`` frames; the answer extends each region's own sequence, same id."""
    if not items:
        raise BadRequest("interactive context on a video holds no videorectangle result")
    names = [p.name for p in config.prompts]
    starts, label_ids = [], []
    for item in items:
        frame, box = item.last_keyframe()
        label = item.label or (names[0] if names else None)
        if label not in names:
            raise BadRequest(f"the label {label!r} is not in the labeling config ({', '.join(names)})")
        starts.append((frame, box))
        label_ids.append(names.index(label))
    path, temporary = setup.fetcher.fetch_video(task_media(task, config, "Video"), access, task.get("id"),
                                                setup.video.max_bytes)
    try:
        source = VideoSource(path, setup.video.fps, setup.fetcher.max_pixels, setup.video.max_frames)
        pixels = PercentFrame(*source.info.size)
        ratio = (config.framerate or LS_DEFAULT_FRAMERATE) / source.info.fps if source.info.fps > 0 else 1.0
        results = []
        for item, (frame, box), label_id in zip(items, starts, label_ids, strict=True):
            video_frame = min(source.info.frame_count - 1, max(0, round((frame - 1) / ratio)))
            tracks = setup.video_labeler().propagate(source, video_frame, pixels.box_to_pixels(box)[None].astype(
                np.float32), [label_id], names, frames=setup.video.propagate_frames)
            tracked = next((r for r in tracks_to_results(tracks, config, setup.video.tolerance)
                            if r["from_name"] == item.from_name), None)
            own = [k for k in item.value["sequence"] if isinstance(k, dict)]
            extra = [k for k in (tracked["value"]["sequence"] if tracked else []) if k["frame"] > frame]
            if own and extra:
                own[-1] = {**own[-1], "enabled": True}  # the track now goes on past the drawn keyframe
            results.append({**item.raw, "origin": "prediction", "value": {
                **item.value, "framesCount": tracked["value"]["framesCount"] if tracked else
                item.value.get("framesCount"), "sequence": own + extra}})
    finally:
        if temporary:
            path.unlink(missing_ok=True)
    return {"model_version": version, "score": 1.0, "result": results}
