"""The Labeler: detector boxes (or a concept model's masks), then segmenter masks for them, as one Regions."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import nms_per_label
from prelabel.core.labels import LabelPrompt
from prelabel.core.model_version import model_version
from prelabel.core.regions import Regions
from prelabel.core.uncertainty import Calibration, score_regions
from prelabel.models.protocols import Detector, Segmenter, Tracker


@dataclass(frozen=True)
class LabelerConfig:
    """Thresholds and limits of one Labeler (all of them shape predictions, so all are in ``model_version``)."""

    box_threshold: float = 0.35
    text_threshold: float = 0.25
    nms_iou: float = 0.5
    max_detections: int = 100


class Labeler:
    """Runs detector then segmenter on an image and returns :class:`Regions`.

    Model code stays behind the Detector/Segmenter protocols; nothing here knows about any tool. Build one
    with :func:`prelabel.pipeline.build_labeler`; either model may be absent (boxes only, or clicks only).
    """

    def __init__(self, detector: Detector | None, segmenter: Segmenter | None, config: LabelerConfig | None = None,
                 dtype: str = "fp32", tracker: Tracker | None = None) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.config = config or LabelerConfig()
        self.dtype = dtype
        self.tracker = tracker  # videos only: propagates boxes between keyframes (None: linear interpolation)

    @property
    def random_weights(self) -> bool:
        """True when any model has random weights: its outputs are meaningless."""
        return any(model is not None and model.random_weights for model in (self.detector, self.segmenter, self.tracker))

    @property
    def models(self) -> dict[str, str | None]:
        """What identifies the models: their ids (runtime included) and the dtype."""
        models = {"detector": self.detector.model_id if self.detector else None,
                  "segmenter": self.segmenter.model_id if self.segmenter else None, "dtype": self.dtype}
        if self.tracker is not None:  # absent otherwise, so image model_versions do not change
            models["tracker"] = self.tracker.model_id
        return models

    def model_version(self, labels: Sequence[LabelPrompt], calibration: Calibration | None = None,
                      video: Mapping[str, object] | None = None) -> str:
        """A stable id of models, prompts, thresholds and calibration (and the video settings of a video
        prediction); it changes when any of them does."""
        thresholds = {**asdict(self.config), **({"video": dict(video)} if video else {})}
        return model_version(self.models, labels, thresholds, self.random_weights,
                             {"calibration": calibration.to_dict()} if calibration else None)

    def predict(
        self,
        image: np.ndarray,
        labels: Sequence[LabelPrompt],
        with_masks: bool = True,
        calibration: Calibration | None = None,
    ) -> Regions:
        """Detect ``labels`` on an ``(H, W, 3)`` uint8 RGB image; segment every kept box when asked.

        Every region gets its uncertainty signals and confidence (see :mod:`prelabel.core.uncertainty`);
        ``calibration`` (learned from feedback) replaces the heuristic confidence.
        """
        if self.detector is None:
            raise PrelabelError("pre-labeling needs a detector; this labeler was built for clicks only "
                                "(set PRELABEL_DETECTOR / --detector)")
        cfg = self.config
        started = time.perf_counter()
        regions = self.detector.detect(image, labels, cfg.box_threshold, cfg.text_threshold)
        keep = nms_per_label(regions.boxes_xyxy, regions.scores, regions.label_ids, cfg.nms_iou)
        regions = regions.select(keep[: cfg.max_detections])
        correct_boxes = getattr(calibration, "correct_boxes", None)  # learned from annotators' adjustments
        if correct_boxes is not None:
            regions = correct_boxes(regions)
        detected = time.perf_counter()
        if with_masks and self.segmenter is not None:
            masks, mask_scores = self.segmenter.segment_boxes(image, regions.boxes_xyxy)
            regions = regions.with_masks(masks, mask_scores)
        thresholds = [cfg.box_threshold if lb.box_threshold is None else lb.box_threshold for lb in labels]
        regions = score_regions(regions, thresholds, calibration)
        meta = {
            "detector": self.detector.model_id,
            "segmenter": self.segmenter.model_id if self.segmenter and with_masks else None,
            "random_weights": self.random_weights,
            "model_version": self.model_version(labels, calibration),
            "seconds": {"detect": round(detected - started, 4), "segment": round(time.perf_counter() - detected, 4)},
        }
        return replace(regions, meta=meta)

    def click(
        self,
        image: np.ndarray,
        points: np.ndarray,
        point_labels: np.ndarray,
        box_xyxy: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """An interactive mask from clicks and/or a box; reuses the cached image embedding."""
        if self.segmenter is None:
            raise PrelabelError("interactive segmentation needs a segmenter; none is configured "
                                "(set PRELABEL_SEGMENTER / --segmenter)")
        return self.segmenter.segment_points(image, points, point_labels, box_xyxy)
