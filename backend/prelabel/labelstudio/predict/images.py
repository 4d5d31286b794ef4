"""Image tasks: the task's image fetched, the Labeler's regions, the prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from prelabel.core.errors import BadRequest, PrelabelError
from prelabel.labelstudio.client import LabelStudioAccess
from prelabel.labelstudio.config import LabelConfig
from prelabel.labelstudio.predict.failures import failed
from prelabel.labelstudio.predict.setup import PredictorSetup
from prelabel.labelstudio.results import prediction


def task_media(task: dict[str, Any], config: LabelConfig, tag: str = "Image") -> str:
    """The URL in the task's data that the config's ``<Image>`` (or ``<Video>``) reads."""
    data = task.get("data")
    if not isinstance(data, dict) or config.image_key not in data:
        raise BadRequest(f"task {task.get('id')} has no data.{config.image_key} (the <{tag}> value)")
    return data[config.image_key]


def task_image(setup: PredictorSetup, task: dict[str, Any], config: LabelConfig,
               access: LabelStudioAccess | None) -> np.ndarray:
    return setup.fetcher.fetch(task_media(task, config), access, task.get("id"))


def predict_image(setup: PredictorSetup, task: dict[str, Any], config: LabelConfig, access: LabelStudioAccess | None,
                  version: str) -> dict[str, Any]:
    """The task's prediction, or a failure (``version`` is the request's) when its image fails."""
    try:
        image = task_image(setup, task, config, access)
    except PrelabelError as exc:  # the task's image: refused, unreachable, unreadable, too large, missing
        return failed(task, version, exc, "image")
    regions = setup.labeler.predict(image, config.prompts, with_masks=config.needs_masks,
                                    calibration=setup.calibration, explore=setup.explore)
    return prediction(regions, config, regions.meta["model_version"], setup.review_threshold)
