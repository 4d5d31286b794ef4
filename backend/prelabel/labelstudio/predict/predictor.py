"""A parsed ``/predict`` request -> the Labeler -> Label Studio predictions; no HTTP framework in here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prelabel.labelstudio.client import LabelStudioAccess
from prelabel.labelstudio.config import LabelConfig
from prelabel.labelstudio.predict.images import predict_image
from prelabel.labelstudio.predict.interactive import interactive
from prelabel.labelstudio.predict.request import PredictRequest
from prelabel.labelstudio.predict.setup import PredictorSetup
from prelabel.labelstudio.predict.video import RESUME_KEY, predict_video
from prelabel.pipeline.video import VideoDeadline


@dataclass(frozen=True)
class PredictOutcome:
    """Results in task order (deferred tasks get an item without ``result``), the deferred tasks, and the
    project's config and ``model_version`` they were predicted with (for the deferred rest)."""

    results: list[dict[str, Any]]
    deferred: list[dict[str, Any]]
    config: LabelConfig
    model_version: str


class LabelStudioPredictor:
    """Routes a request to image or video pre-labeling, or to a smart tool, with one :class:`PredictorSetup`;
    the project's config and ``model_version`` are worked out once per request."""

    def __init__(self, setup: PredictorSetup) -> None:
        self.setup = setup

    def interactive(self, request: PredictRequest, access: LabelStudioAccess | None) -> dict[str, Any]:
        """The smart-tool answer for the request's one task."""
        config = self.setup.for_project(request.config)
        return interactive(self.setup, request.tasks[0], config, request.context, access,
                           self.setup.model_version(config))

    def predict_tasks(self, request: PredictRequest, access: LabelStudioAccess | None,
                      deadline: float | None = None) -> PredictOutcome:
        """One result per task. Past ``deadline`` (a ``time.monotonic()`` value) the rest are deferred."""
        config = self.setup.for_project(request.config)
        version = self.setup.model_version(config)
        results, deferred = [], []
        for task in request.tasks:
            if deadline is not None and time.monotonic() > deadline:
                deferred.append(task)
                # No "result" key: Label Studio skips this item and stores nothing for the task.
                results.append({"model_version": version, "deferred": True})
                continue
            try:
                results.append(self.predict_task(task, config, access, version, deadline))
            except VideoDeadline as stop:  # the rest of this video is finished in the background
                deferred.append({**task, RESUME_KEY: stop.state})
                results.append({"model_version": version, "deferred": True})
        return PredictOutcome(results, deferred, config, version)

    def predict_task(self, task: dict[str, Any], config: LabelConfig, access: LabelStudioAccess | None,
                     version: str, deadline: float | None = None) -> dict[str, Any]:
        """The prediction for one task, or an item with an ``error`` (and no ``result``) when it fails.

        A video past ``deadline`` raises :class:`VideoDeadline` with the state reached."""
        if config.is_video:
            return predict_video(self.setup, task, config, access, version, deadline)
        return predict_image(self.setup, task, config, access, version)
