"""The names of the per-region uncertainty signals (the columns of ``Regions.data["features"]``)."""

from __future__ import annotations

from collections.abc import Sequence

FEATURES = (
    "score",  # detector confidence
    "margin",  # (score - label threshold) / (1 - label threshold): how far above the cut
    "mask_score",  # the segmenter's predicted IoU of the mask
    "box_mask_iou",  # agreement of the detector box with the mask's bounding box
    "cross_label_iou",  # highest box IoU with a region of another label (near-duplicate, label confusion)
    "sqrt_area",  # sqrt of the box's share of the image: small objects are harder
)


def feature_dict(row: Sequence[float]) -> dict[str, float]:
    """One region's signals by name, rounded for JSON."""
    return {name: round(float(value), 4) for name, value in zip(FEATURES, row)}
