"""Tasks whose image or video failed: the failure Label Studio stores and shows, once, and dropped again once the
task is pre-labeled."""

from __future__ import annotations

import logging
from typing import Any

from prelabel.core.errors import PrelabelError
from prelabel.core.fetch import FetchRefused
from prelabel.core.images import ImageError
from prelabel.core.video import VideoError
from prelabel.labelstudio.result_items import task_predictions
from prelabel.labelstudio.results import failed_prediction, is_failed_version
from prelabel.labelstudio.task_images import ImageFetchError

log = logging.getLogger(__name__)


def failed(task: dict[str, Any], version: str, exc: PrelabelError, medium: str) -> dict[str, Any]:
    """The answer for a task whose image or video failed: a failure Label Studio stores and shows
    (:func:`failed_prediction`), or, when the task shows that very failure already, an item without "result"
    (Label Studio then stores no second copy)."""
    log.warning("task %s not pre-labeled: %s", task.get("id"), exc)
    failure = failed_prediction(version, failure_kind(exc, medium), str(exc))
    if any(p.get("model_version") == failure["model_version"] for p in task_predictions(task)):
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


def stale_failures(task: dict[str, Any]) -> list[int]:
    """Ids of the task's stored failed predictions (:func:`failed_prediction`), once it has been pre-labeled."""
    return [int(p["id"]) for p in task_predictions(task)
            if is_failed_version(p.get("model_version")) and isinstance(p.get("id"), int)]
