"""Learning from adjustments: each label's systematic box error, as a validated scale/offset correction.

From the matched regions of the feedback (predicted box -> the box the annotator kept), per label, in the
predicted box's own units: centre offsets ``dx = (cx_final - cx_pred) / w_pred`` and ``dy``, log scales
``sw = log(w_final / w_pred)`` and ``sh``. The correction is their median (robust to the odd redraw); it
is applied to the detector's boxes before segmentation. It is validated like the calibration: on held-out
folds (grouped by annotation), the mean IoU of corrected predictions to the final boxes must beat the
uncorrected one by ``MIN_IOU_GAIN``, else the label gets no correction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from prelabel.core.geometry import box_iou
from prelabel.core.regions import Regions
from prelabel.core.scoring import Confidence
from prelabel.core.uncertainty import confidence_of
from prelabel.feedback.matching import RegionOutcome
from prelabel.feedback.validation import fold_of

MIN_IOU_GAIN = 0.005


@dataclass(frozen=True)
class BoxCorrection:
    """Per label ``(dx, dy, sw, sh)``: centre shift in box widths/heights and log scale of width/height."""

    labels: dict[str, tuple[float, float, float, float]]

    def apply_boxes(self, boxes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """Corrected ``(N, 4)`` xyxy boxes (any units); labels without a correction are unchanged."""
        out = np.asarray(boxes, dtype=np.float64).copy()
        for i, label in enumerate(labels):
            if label not in self.labels:
                continue
            dx, dy, sw, sh = self.labels[label]
            x1, y1, x2, y2 = out[i]
            w, h = x2 - x1, y2 - y1
            cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
            w, h = w * np.exp(sw), h * np.exp(sh)
            out[i] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        return out

    def apply(self, regions: Regions) -> Regions:
        """Regions with corrected boxes, clipped to the image (before masks are computed from them)."""
        if not len(regions) or not self.labels:
            return regions
        width, height = regions.image_size
        boxes = self.apply_boxes(regions.boxes_xyxy, [regions.label_names[i] for i in regions.label_ids])
        boxes = np.clip(boxes, 0, [width, height, width, height]).astype(regions.boxes_xyxy.dtype)
        return replace(regions, boxes_xyxy=boxes)

    def to_dict(self) -> dict[str, Any]:
        return {label: [round(v, 5) for v in values] for label, values in sorted(self.labels.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BoxCorrection:
        return cls({str(k): tuple(float(v) for v in values) for k, values in data.items()})  # type: ignore[misc]


def box_deltas(predicted: np.ndarray, final: np.ndarray) -> np.ndarray:
    """``(N, 4)`` of ``(dx, dy, sw, sh)`` taking each predicted box to its final box."""
    p, f = np.asarray(predicted, dtype=np.float64), np.asarray(final, dtype=np.float64)
    pw, ph = np.maximum(p[:, 2] - p[:, 0], 1e-9), np.maximum(p[:, 3] - p[:, 1], 1e-9)
    fw, fh = np.maximum(f[:, 2] - f[:, 0], 1e-9), np.maximum(f[:, 3] - f[:, 1], 1e-9)
    dx = ((f[:, 0] + f[:, 2]) - (p[:, 0] + p[:, 2])) / 2 / pw
    dy = ((f[:, 1] + f[:, 3]) - (p[:, 1] + p[:, 3])) / 2 / ph
    return np.stack([dx, dy, np.log(fw / pw), np.log(fh / ph)], axis=1)


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.diag(box_iou(np.asarray(a, np.float32), np.asarray(b, np.float32))))) if len(a) else 0.0


def fit_box_correction(
    outcomes: Sequence[RegionOutcome], groups: Sequence[Any], min_samples: int = 20,
    current: BoxCorrection | None = None,
) -> tuple[BoxCorrection | None, dict[str, Any]]:
    """Validated per-label box corrections from the matched (kept) regions; labels that fail keep ``current``'s."""
    labels: dict[str, tuple[float, float, float, float]] = dict(current.labels) if current else {}
    report: dict[str, Any] = {}
    rows = [(o, g) for o, g in zip(outcomes, groups) if o.kept and o.predicted_box and o.final_box]
    for label in sorted({o.label for o, _ in rows}):
        mine = [(o, g) for o, g in rows if o.label == label]
        if len(mine) < min_samples:
            report[label] = {"applied": False, "matched": len(mine), "reason": f"fewer than {min_samples} matched"}
            continue
        pred = np.array([o.predicted_box for o, _ in mine])
        final = np.array([o.final_box for o, _ in mine])
        fold, k = fold_of([g for _, g in mine])
        which = np.array([fold.get(g, -1) for _, g in mine])
        corrected = pred.copy()
        for f in range(k):
            held = which == f
            delta = tuple(np.median(box_deltas(pred[~held], final[~held]), axis=0))
            corrected[held] = BoxCorrection({label: delta}).apply_boxes(pred[held], [label] * int(held.sum()))
        before, after = mean_iou(pred, final), mean_iou(corrected, final)
        delta = tuple(float(v) for v in np.median(box_deltas(pred, final), axis=0))
        entry = {"matched": len(mine), "held_out_mean_iou": {"uncorrected": round(before, 4),
                                                                "corrected": round(after, 4)},
                 "correction": [round(v, 5) for v in delta]}
        if k and after > before + MIN_IOU_GAIN:
            labels[label] = delta  # type: ignore[assignment]
            entry.update(applied=True, reason=f"held-out mean IoU {before:.4f} -> {after:.4f}")
        else:
            entry.update(applied=False, reason=f"held-out mean IoU does not improve enough ({before:.4f} -> "
                                               f"{after:.4f}, needs +{MIN_IOU_GAIN})")
        report[label] = entry
    return (BoxCorrection(labels) if labels else None), report


@dataclass(frozen=True)
class LearnedScoring:
    """The :class:`~prelabel.core.scoring.Scoring` of a fit that corrects boxes too: the confidence of the
    calibration (or the heuristic) and ``correct_boxes`` before segmentation. ``to_dict`` feeds
    ``model_version``, so a new correction is a new version."""

    calibration: Confidence | None
    boxes: BoxCorrection

    def confidence(self, features: np.ndarray) -> np.ndarray:
        return confidence_of(self.calibration, features)

    def correct_boxes(self, regions: Regions) -> Regions:
        return self.boxes.apply(regions)

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration.to_dict() if self.calibration else None,
                "box_correction": self.boxes.to_dict()}
