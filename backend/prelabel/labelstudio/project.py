"""Label Studio seen from outside its ML backend (a batch job): a project's tasks as a source of images, predictions
pushed back to them, and task images fetched with the configured server's authentication."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.fetch import FetchPolicy
from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.labelstudio.client import LabelStudioAccess, LabelStudioClient
from prelabel.labelstudio.config import parse_label_config
from prelabel.labelstudio.task_images import TaskImageFetcher
from prelabel.labelstudio.tasks import TaskConfig
from prelabel.settings import Settings


def configured_access(settings: Settings) -> LabelStudioAccess | None:
    """The Label Studio of ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``, if one is set."""
    return LabelStudioAccess(settings.label_studio_url, settings.label_studio_api_key) \
        if settings.label_studio_url else None


class LabelStudioProject:
    """One project of the configured Label Studio, labeled with ``labels``: its labeling config, its tasks' images,
    and predictions pushed to its tasks."""

    def __init__(self, client: LabelStudioClient, project: int, labels: Sequence[LabelPrompt]) -> None:
        self.client = client
        self.project = project
        self.labels = tuple(labels)

    @classmethod
    def open(cls, settings: Settings, project: int, labels: Sequence[LabelPrompt]) -> LabelStudioProject:
        access = configured_access(settings)
        if access is None or not access.api_key:
            raise PrelabelError("a Label Studio project needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
        return cls(LabelStudioClient.for_access(access), project, labels)

    @property
    def label_config(self) -> str:
        """The project's labeling config XML."""
        return self.client.label_config(self.project)

    @cached_property
    def task_config(self) -> TaskConfig:
        """The project's labeling config, parsed for ``labels``: what its predictions are written for."""
        return TaskConfig.for_images(self.labels, with_masks=True, xml=self.label_config)

    def images(self) -> list[tuple[int, str]]:
        """Every task's id and image URL (the data key its labeling config names)."""
        image_key = parse_label_config(self.label_config).image_key
        return [(task.id, str(task.data.get(image_key, ""))) for task in self.client.sdk.tasks.list(project=self.project)]

    def push(self, task_id: int, regions: Regions, model_version: str, review_threshold: float) -> None:
        """Store ``regions`` as a prediction of the task."""
        self.client.push_prediction(task_id, self.task_config.prediction(regions, model_version, review_threshold))

    def use_model_version(self, version: str) -> None:
        """Point the project at ``version``, so the Data Manager sorts by its predictions' scores."""
        self.client.set_project_model_version(self.project, version)


class TaskImages:
    """Images a batch names by URL (or by task), fetched with the configured Label Studio's authentication where
    they are on it.

    The URLs are the ones the person running the batch chose, so any host is fetched, private networks included
    (the server's allowlist guards requests from others); size, time and pixel limits still apply.
    """

    def __init__(self, settings: Settings) -> None:
        self.access = configured_access(settings)
        self.fetcher = TaskImageFetcher(timeout_s=settings.fetch_timeout_s, max_pixels=settings.max_pixels,
                                        policy=FetchPolicy(allowed_hosts=("*",), allow_private=True))

    def fetch(self, url: str, task_id: int | None = None) -> np.ndarray:
        """The image; raises an ``ImageFetchError`` with a clear message."""
        return self.fetcher.fetch(url, self.access, task_id)

