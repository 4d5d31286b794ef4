"""Per-region uncertainty signals, the confidence they give, and the learned calibration of it.

Confidence is the probability-like number shown to annotators (the Label Studio region ``score``);
``uncertainty = 1 - confidence``. Without feedback it is the documented heuristic
``score * mask_score * box_mask_iou * (1 - cross_label_iou)``; after ``fit`` it is a logistic regression
over all signals that predicts whether an annotator keeps the region (accepts it or adjusts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from prelabel.core.errors import PrelabelError
from prelabel.core.features import FEATURES
from prelabel.core.geometry import box_iou
from prelabel.core.regions import Regions
from prelabel.core.scoring import Confidence, CorrectsNoBox


def region_features(regions: Regions, thresholds: Sequence[float]) -> np.ndarray:
    """The ``(N, len(FEATURES))`` signals of every region; ``thresholds`` holds each label's box threshold."""
    n = len(regions)
    if n == 0:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    scores = regions.scores.astype(np.float64)
    cut = np.asarray(thresholds, dtype=np.float64)[regions.label_ids]
    margin = np.clip((scores - cut) / np.maximum(1.0 - cut, 1e-6), 0.0, 1.0)
    if regions.masks is not None and regions.mask_scores is not None:
        mask_score = regions.mask_scores.astype(np.float64)
        mask_boxes = regions.masks.boxes()
        agreement = np.diag(box_iou(regions.boxes_xyxy, mask_boxes))
    else:
        mask_score, agreement = np.ones(n), np.ones(n)
    ious = box_iou(regions.boxes_xyxy, regions.boxes_xyxy)
    ious[regions.label_ids[:, None] == regions.label_ids[None, :]] = 0.0
    ious[:, candidate_mask(regions)] = 0.0  # exploration candidates leave the shown regions' signals as they were
    cross = ious.max(axis=1)
    width, height = regions.image_size
    boxes = regions.boxes_xyxy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / float(width * height)
    return np.stack([scores, margin, mask_score, agreement, cross, np.sqrt(area)], axis=1).astype(np.float32)


def heuristic_confidence(features: np.ndarray) -> np.ndarray:
    """The confidence used before any feedback: every signal must be good for the region to be trusted."""
    col = {name: features[:, i] for i, name in enumerate(FEATURES)}
    return np.clip(col["score"] * col["mask_score"] * col["box_mask_iou"] * (1.0 - col["cross_label_iou"]), 0, 1)


@dataclass(frozen=True)
class Calibration(CorrectsNoBox):
    """A logistic regression over :data:`FEATURES` giving P(an annotator keeps the region)."""

    coef: tuple[float, ...]
    intercept: float

    @classmethod
    def fit(cls, features: np.ndarray, kept: np.ndarray) -> Calibration:
        """Fit on region features and whether annotators kept each region (needs both outcomes)."""
        from sklearn.linear_model import LogisticRegression  # heavy (0.7 s to import) and needed by fits only

        kept = np.asarray(kept, dtype=bool)
        if kept.all() or not kept.any():
            raise ValueError("calibration needs both kept and deleted regions in the feedback")
        model = LogisticRegression(C=1.0, max_iter=1000).fit(np.asarray(features, dtype=np.float64), kept)
        return cls(tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]))

    def confidence(self, features: np.ndarray) -> np.ndarray:
        """P(kept) for each row of ``features``."""
        return expit(np.asarray(features, dtype=np.float64) @ np.asarray(self.coef) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "coef": list(self.coef), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if list(data.get("features", [])) != list(FEATURES):
            raise PrelabelError("the stored calibration was fitted on other features; fit again")
        return cls(tuple(float(c) for c in data["coef"]), float(data["intercept"]))


def confidence_of(calibration: Confidence | None, features: np.ndarray) -> np.ndarray:
    """The confidence a calibration (None: the heuristic) gives to feature rows."""
    features = np.asarray(features, dtype=np.float64)
    return heuristic_confidence(features) if calibration is None else np.asarray(calibration.confidence(features))


def score_regions(regions: Regions, thresholds: Sequence[float], calibration: Confidence | None = None) -> Regions:
    """Regions carrying their features and ``uncertainty = 1 - confidence``."""
    features = region_features(regions, thresholds)
    return regions.with_data(features=features, uncertainty=1.0 - confidence_of(calibration, features))


def region_confidence(regions: Regions) -> np.ndarray:
    """Per-region confidence: ``1 - uncertainty`` when scored, else the detector score."""
    if regions.uncertainty is None:
        return regions.scores
    return 1.0 - regions.uncertainty


EXPLORE_WEIGHT = "explore_weight"  # > 0: an exploration candidate (prelabel.pipeline.exploration), its inverse odds


def candidate_mask(regions: Regions) -> np.ndarray:
    """Which regions are exploration candidates (below-threshold detections shown to be judged)."""
    weight = regions.data.get(EXPLORE_WEIGHT)
    return np.zeros(len(regions), dtype=bool) if weight is None else np.asarray(weight) > 0


def task_score(regions: Regions) -> float:
    """A task's score, lower = a human should look first: its least confident region, 1.0 without regions.
    Exploration candidates do not count (they are below the threshold by design)."""
    confidence = region_confidence(regions)[~candidate_mask(regions)]
    return float(confidence.min()) if len(confidence) else 1.0
