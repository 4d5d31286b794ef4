"""The Labeler: Grounding DINO boxes, then SAM masks for all of them, as one Regions."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from prelabel.geometry import nms_per_label
from prelabel.labels import LabelPrompt
from prelabel.models.base import Detector, Segmenter
from prelabel.regions import Regions
from prelabel.uncertainty import Calibration, score_regions


@dataclass(frozen=True)
class LabelerConfig:
    """Thresholds and limits of one Labeler."""

    box_threshold: float = 0.35
    text_threshold: float = 0.25
    nms_iou: float = 0.5
    max_detections: int = 100
    review_threshold: float = 0.45


def model_version(
    detector_id: str,
    segmenter_id: str | None,
    random_weights: bool,
    labels: Sequence[LabelPrompt],
    config: LabelerConfig,
    calibration: Calibration | None = None,
) -> str:
    """A short id of everything that shapes predictions; computable before any model is loaded."""
    payload = {
        "detector": detector_id,
        "segmenter": segmenter_id,
        "labels": [asdict(label) for label in labels],
        "config": asdict(config),
    }
    if calibration is not None:
        payload["calibration"] = calibration.to_dict()
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"{'prelabel-random' if random_weights else 'prelabel'}-{digest}"


class Labeler:
    """Runs detector then segmenter on an image and returns :class:`Regions`.

    Model code stays behind the Detector/Segmenter protocols; nothing here knows about any tool.
    """

    def __init__(self, detector: Detector, segmenter: Segmenter | None, config: LabelerConfig | None = None) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.config = config or LabelerConfig()

    @classmethod
    def from_specs(
        cls,
        detector: str,
        segmenter: str | None,
        device: str = "auto",
        dtype: str = "fp32",
        config: LabelerConfig | None = None,
        cache_mb: int = 512,
        sam_runtime: str = "torch",
    ) -> Labeler:
        """Load models by spec (hub id, local path, official checkpoint or ``random-*``)."""
        from prelabel.models.registry import load_detector, load_segmenter

        seg = load_segmenter(segmenter, device, dtype, cache_mb, sam_runtime) if segmenter else None
        return cls(load_detector(detector, device, dtype), seg, config)

    @property
    def random_weights(self) -> bool:
        """True when any model has random weights: its outputs are meaningless."""
        return self.detector.random_weights or bool(self.segmenter and self.segmenter.random_weights)

    def model_version(self, labels: Sequence[LabelPrompt], calibration: Calibration | None = None) -> str:
        """A stable id of models, prompts, thresholds and calibration; it changes when any of them does."""
        return model_version(
            self.detector.model_id, self.segmenter.model_id if self.segmenter else None, self.random_weights,
            labels, self.config, calibration,
        )

    def predict(
        self,
        image: np.ndarray,
        labels: Sequence[LabelPrompt],
        with_masks: bool = True,
        calibration: Calibration | None = None,
    ) -> Regions:
        """Detect ``labels`` on an ``(H, W, 3)`` uint8 RGB image; segment every kept box when asked.

        Every region gets its uncertainty signals and confidence (see :mod:`prelabel.uncertainty`);
        ``calibration`` (learned from feedback) replaces the heuristic confidence.
        """
        cfg = self.config
        started = time.perf_counter()
        regions = self.detector.detect(image, labels, cfg.box_threshold, cfg.text_threshold)
        keep = nms_per_label(regions.boxes_xyxy, regions.scores, regions.label_ids, cfg.nms_iou)
        regions = regions.select(keep[: cfg.max_detections])
        detected = time.perf_counter()
        masks_from_detector = regions.masks is not None  # SAM 3 segments itself: no second image encoder
        if not with_masks and masks_from_detector:
            regions = replace(regions, masks=None, mask_scores=None)
        elif with_masks and self.segmenter is not None and not masks_from_detector:
            masks, mask_scores = self.segmenter.segment_boxes(image, regions.boxes_xyxy)
            regions = regions.with_masks(masks, mask_scores)
        thresholds = [cfg.box_threshold if lb.box_threshold is None else lb.box_threshold for lb in labels]
        regions = score_regions(regions, thresholds, calibration)
        meta = {
            **regions.meta,  # the detector's own provenance (SAM 3: per-label presence)
            "detector": self.detector.model_id,
            "segmenter": self.segmenter.model_id if self.segmenter and with_masks and not masks_from_detector else None,
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
        """An interactive SAM mask from clicks and/or a box; reuses the cached image embedding.

        Without a segmenter, a detector that segments clicks itself (SAM 3's tracker on its cached
        vision features) answers them.
        """
        segmenter = self.segmenter if self.segmenter is not None else self.detector
        if not hasattr(segmenter, "segment_points"):
            raise RuntimeError("interactive segmentation needs a segmenter; none is configured")
        return segmenter.segment_points(image, points, point_labels, box_xyxy)

    def find_similar(
        self,
        image: np.ndarray,
        labels: Sequence[LabelPrompt],
        label: str,
        positive_boxes: np.ndarray,
        negative_boxes: np.ndarray | None = None,
        calibration: Calibration | None = None,
    ) -> Regions:
        """"Label one, find all": every instance like the exemplar pixel boxes, as ``label`` (SAM 3 detectors).

        Positive boxes are drawn instances of ``label``; negative boxes are false hits to steer away from.
        The result is thresholded, NMS-ed and scored like :meth:`predict`.
        """
        if not hasattr(self.detector, "find_similar"):
            raise RuntimeError(f"exemplar prompts need a SAM 3 detector; {self.detector.model_id!r} has none")
        cfg = self.config
        started = time.perf_counter()
        regions = self.detector.find_similar(image, labels, label, positive_boxes, negative_boxes, cfg.box_threshold)
        keep = nms_per_label(regions.boxes_xyxy, regions.scores, regions.label_ids, cfg.nms_iou)
        regions = regions.select(keep[: cfg.max_detections])
        thresholds = [cfg.box_threshold if lb.box_threshold is None else lb.box_threshold for lb in labels]
        regions = score_regions(regions, thresholds, calibration)
        meta = {**regions.meta, "detector": self.detector.model_id, "segmenter": None,
                "random_weights": self.random_weights, "model_version": self.model_version(labels, calibration),
                "seconds": {"detect": round(time.perf_counter() - started, 4), "segment": 0.0}}
        return replace(regions, meta=meta)
