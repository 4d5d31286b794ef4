"""Label Studio task files: the labeling config they go with, and tasks with their predictions (images, videos)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.core.video import Tracks
from prelabel.labelstudio.config import LabelConfig, image_config, parse_label_config, video_config
from prelabel.labelstudio.results import prediction, video_prediction


@dataclass(frozen=True)
class TaskConfig:
    """A labeling config that tasks are written for: the XML a project is created with, and its parsed form."""

    xml: str
    parsed: LabelConfig

    @classmethod
    def for_images(cls, labels: Sequence[LabelPrompt], with_masks: bool, xml: str | None = None) -> TaskConfig:
        """The given config XML (a project's, a user's), else boxes and, with masks, polygons of ``labels``."""
        xml = xml or image_config([label.name for label in labels], polygons=with_masks)
        return cls(xml, parse_label_config(xml, {label.name: label for label in labels}))

    @classmethod
    def for_videos(cls, labels: Sequence[LabelPrompt]) -> TaskConfig:
        """Video rectangles of ``labels`` on a ``<Video>``."""
        xml = video_config([label.name for label in labels])
        return cls(xml, parse_label_config(xml))

    def prediction(self, regions: Regions, model_version: str, review_threshold: float) -> dict[str, Any]:
        """An image's prediction (review notes and uncertainty signals included)."""
        return prediction(regions, self.parsed, model_version, review_threshold)

    def image_task(self, image: str, regions: Regions, model_version: str, review_threshold: float) -> dict[str, Any]:
        """A task of the image at ``image`` (a URL or path) with its prediction, ready for the project import API
        or the UI."""
        return {"data": {self.parsed.image_key: image},
                "predictions": [self.prediction(regions, model_version, review_threshold)]}

    def video_task(self, video: str, tracks: Tracks, model_version: str, review_threshold: float = 0.0
                   ) -> dict[str, Any]:
        """A task of the video at ``video`` with its tracks as a prediction."""
        return {"data": {self.parsed.image_key: video},
                "predictions": [video_prediction(tracks, self.parsed, model_version, review_threshold)]}
