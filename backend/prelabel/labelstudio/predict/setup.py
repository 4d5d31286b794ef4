"""What every part of the predictor shares: the one Labeler, the image fetcher, and the project's settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from prelabel.core.scoring import Scoring
from prelabel.feedback.fit import Learned
from prelabel.labelstudio.config import LabelConfig
from prelabel.labelstudio.task_images import TaskImageFetcher
from prelabel.pipeline import Exploration, Labeler, exploration, planned_model_version
from prelabel.pipeline.video import VideoConfig, VideoLabeler
from prelabel.settings import Settings


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


@dataclass(frozen=True)
class PredictorSetup:
    """The models and settings one project's predictions are made with.

    ``learned`` (the project's latest fit) supplies per-label thresholds and the confidence calibration;
    ``explore`` adds below-threshold candidates to each prediction (``PRELABEL_EXPLORE_SHARE``).
    """

    labeler: Labeler
    fetcher: TaskImageFetcher
    review_threshold: float = 0.0
    learned: Learned | None = None
    explore: Exploration | None = None
    video: VideoOptions = field(default_factory=VideoOptions)

    @property
    def calibration(self) -> Scoring | None:
        return self.learned.scoring() if self.learned else None

    def for_project(self, config: LabelConfig) -> LabelConfig:
        """``config`` with the project's learned per-label thresholds."""
        return replace(config, prompts=self.learned.apply(config.prompts)) if self.learned else config

    def video_labeler(self) -> VideoLabeler:
        return VideoLabeler(self.labeler, self.video.config)

    def model_version(self, config: LabelConfig) -> str:
        """The model_version of what these models make of ``config``'s tasks (``config`` as :meth:`for_project`
        returns it)."""
        if config.is_video:
            return self.video_labeler().model_version(config.prompts, self.calibration)
        return self.labeler.model_version(config.prompts, self.calibration, self.explore)


def planned_version(settings: Settings, config: LabelConfig, learned: Learned | None) -> str:
    """What :meth:`PredictorSetup.model_version` will report for ``config`` once the models load, from the settings
    alone (``/setup`` answers before they load). Video predictions show no exploration candidates, so a video
    config's version has no exploration part."""
    prompts = learned.apply(config.prompts) if learned else config.prompts
    calibration = learned.scoring() if learned else None
    if config.is_video:  # the parameters VideoLabeler.video_params() reports once the models are loaded
        video = {**VideoConfig.from_settings(settings).to_dict(),
                 "between_keyframes": settings.video_tracker or "linear-interpolation"}
        return planned_model_version(settings, prompts, calibration, video=video)
    return planned_model_version(settings, prompts, calibration, exploration(settings))
