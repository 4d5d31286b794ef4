"""Label Studio task files: tasks with their predictions (images, videos) and the labeling config they go with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.core.video import Tracks
from prelabel.labelstudio.config import LabelConfig, image_config, parse_label_config
from prelabel.labelstudio.results import prediction, video_prediction


def image_task(image: str, regions: Regions, config: LabelConfig, model_version: str,
               review_threshold: float) -> dict[str, Any]:
    """A Label Studio task of the image at ``image`` (a URL or path) with its prediction (review notes and
    uncertainty signals included), ready for the project import API or the UI."""
    return {"data": {config.image_key: image},
            "predictions": [prediction(regions, config, model_version, review_threshold)]}


def video_task(video: str, tracks: Tracks, config: LabelConfig, model_version: str,
               review_threshold: float = 0.0) -> dict[str, Any]:
    """A Label Studio task of the video at ``video`` with its tracks as a prediction."""
    return {"data": {config.image_key: video},
            "predictions": [video_prediction(tracks, config, model_version, review_threshold)]}


def config_for(xml: str | None, labels: Sequence[LabelPrompt], with_masks: bool) -> tuple[str, LabelConfig]:
    """The labeling config XML (the given one, or boxes and, with masks, polygons of ``labels``) and its parsed
    form."""
    xml = xml or image_config([label.name for label in labels], polygons=with_masks)
    return xml, parse_label_config(xml, {label.name: label for label in labels})
