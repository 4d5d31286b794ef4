"""Match a human annotation's regions to the prediction it started from, per control and label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy.optimize import linear_sum_assignment

from prelabel.core.geometry import box_iou, mask_iou
from prelabel.core.shapes import Shape


class Outcome(str, Enum):
    """What the annotator did with a region."""

    ACCEPTED = "accepted"  # predicted region kept unchanged (IoU >= unchanged_iou)
    ADJUSTED = "adjusted"  # predicted region kept, geometry edited (match_iou <= IoU < unchanged_iou)
    DELETED = "deleted"  # predicted region with no human counterpart: a false positive
    ADDED = "added"  # human region with no predicted counterpart: a miss


@dataclass(frozen=True)
class RegionOutcome:
    """One region's fate. ``score``/``features`` are the prediction's (None for added regions)."""

    from_name: str
    label: str
    outcome: Outcome
    iou: float | None
    score: float | None
    features: dict[str, float] | None
    # Matched regions only: the predicted and the final box, (x1, y1, x2, y2) as fractions of the image
    # (what learning each label's systematic box error needs; see prelabel.feedback.geometry_correction).
    predicted_box: tuple[float, ...] | None = None
    final_box: tuple[float, ...] | None = None

    @property
    def kept(self) -> bool:
        return self.outcome in (Outcome.ACCEPTED, Outcome.ADJUSTED)


def shape_ious(a: Sequence[Shape], b: Sequence[Shape]) -> np.ndarray:
    """Pairwise IoU: of masks when every shape has one of the same size (polygons, brushes), else of boxes."""
    masks = [s.mask for s in [*a, *b]]
    if a and b and all(m is not None and m.shape == masks[0].shape for m in masks):
        return mask_iou(np.stack(masks[: len(a)]), np.stack(masks[len(a):]))
    boxes = lambda shapes: np.array([s.box_xyxy for s in shapes], dtype=np.float32).reshape(-1, 4)
    return box_iou(boxes(a), boxes(b))


def match_shapes(
    predicted: Sequence[Shape], human: Sequence[Shape], match_iou: float = 0.5, unchanged_iou: float = 0.95
) -> list[RegionOutcome]:
    """Optimal one-to-one matching (Hungarian, on IoU) within each (control, label) group."""
    if not 0 < match_iou <= unchanged_iou <= 1:
        raise ValueError("need 0 < match_iou <= unchanged_iou <= 1")
    groups = {(s.from_name, s.label) for s in [*predicted, *human]}
    outcomes: list[RegionOutcome] = []
    for from_name, label in sorted(groups):
        preds = [s for s in predicted if (s.from_name, s.label) == (from_name, label)]
        gts = [s for s in human if (s.from_name, s.label) == (from_name, label)]
        ious = shape_ious(preds, gts)
        rows, cols = linear_sum_assignment(-ious) if ious.size else (np.zeros(0, int), np.zeros(0, int))
        pairs = {int(r): int(c) for r, c in zip(rows, cols) if ious[r, c] >= match_iou}
        for i, pred in enumerate(preds):
            boxes: tuple[tuple[float, ...] | None, tuple[float, ...] | None] = (None, None)
            if i in pairs:
                iou = float(ious[i, pairs[i]])
                outcome = Outcome.ACCEPTED if iou >= unchanged_iou else Outcome.ADJUSTED
                boxes = (_fraction_box(pred), _fraction_box(gts[pairs[i]]))
            else:
                iou, outcome = None, Outcome.DELETED
            outcomes.append(RegionOutcome(from_name, label, outcome, iou, pred.score, pred.features, *boxes))
        matched = set(pairs.values())
        outcomes += [RegionOutcome(from_name, label, Outcome.ADDED, None, None, None)
                     for j in range(len(gts)) if j not in matched]
    return outcomes


def _fraction_box(shape: Shape) -> tuple[float, ...]:
    width, height = shape.image_size
    return tuple(round(float(v), 6) for v in np.asarray(shape.box_xyxy, dtype=np.float64) / [width, height, width, height])
