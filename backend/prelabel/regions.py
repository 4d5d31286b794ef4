"""The one data type that flows from the models to every format adapter."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Regions:
    """Detected regions of one image, in pixel coordinates of the image as the annotator sees it.

    Attributes:
        image_size: ``(width, height)`` in pixels.
        label_names: every label the request asked for; ``label_ids`` index into it.
        boxes_xyxy: ``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]``, clipped to the image.
        scores: ``(N,)`` detector confidence in ``[0, 1]``.
        label_ids: ``(N,)`` int64 indices into ``label_names``.
        masks: optional ``(N, H, W)`` bool masks.
        mask_scores: optional ``(N,)`` segmenter quality (SAM's predicted IoU) in ``[0, 1]``.
        uncertainty: optional ``(N,)`` in ``[0, 1]``; higher means a human should look first.
        features: optional ``(N, F)`` uncertainty signals, columns named by ``prelabel.uncertainty.FEATURES``.
        meta: free-form provenance (model ids, ``random_weights``, timings).
    """

    image_size: tuple[int, int]
    label_names: tuple[str, ...]
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    label_ids: np.ndarray
    masks: np.ndarray | None = None
    mask_scores: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    features: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        width, height = self.image_size
        if width <= 0 or height <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        object.__setattr__(self, "boxes_xyxy", boxes)
        object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(self, "scores", _vector(self.scores, n, np.float32, "scores"))
        object.__setattr__(self, "label_ids", _vector(self.label_ids, n, np.int64, "label_ids"))
        for name in ("mask_scores", "uncertainty"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _vector(value, n, np.float32, name))
        if n and (self.label_ids.min() < 0 or self.label_ids.max() >= len(self.label_names)):
            raise ValueError("label_ids must index label_names")
        if n and (boxes[:, 2] < boxes[:, 0]).any() | (boxes[:, 3] < boxes[:, 1]).any():
            raise ValueError("boxes must satisfy x1 <= x2 and y1 <= y2")
        if n and ((boxes < 0).any() or (boxes[:, [0, 2]] > width).any() or (boxes[:, [1, 3]] > height).any()):
            raise ValueError("boxes must lie inside the image; clip them first")
        if n and ((self.scores < 0) | (self.scores > 1)).any():
            raise ValueError("scores must lie in [0, 1]")
        if self.features is not None:
            features = np.asarray(self.features, dtype=np.float32)
            if features.ndim != 2 or len(features) != n:
                raise ValueError(f"features must have shape (N={n}, F), got {features.shape}")
            object.__setattr__(self, "features", features)
        if self.masks is not None:
            masks = np.asarray(self.masks, dtype=bool)
            if masks.shape != (n, height, width):
                raise ValueError(f"masks must have shape {(n, height, width)}, got {masks.shape}")
            object.__setattr__(self, "masks", masks)

    def __len__(self) -> int:
        return len(self.boxes_xyxy)

    @property
    def labels(self) -> list[str]:
        """The label name of each region."""
        return [self.label_names[i] for i in self.label_ids]

    @classmethod
    def empty(cls, image_size: tuple[int, int], label_names: tuple[str, ...] | list[str], **meta: Any) -> Regions:
        """No regions on an image of the given size."""
        return cls(image_size, tuple(label_names), np.zeros((0, 4)), np.zeros(0), np.zeros(0), meta=dict(meta))

    def select(self, keep: np.ndarray | list[int]) -> Regions:
        """The subset at ``keep`` (indices or a boolean mask), in that order."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        keep = keep.astype(np.int64)
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return replace(
            self,
            boxes_xyxy=self.boxes_xyxy[keep],
            scores=self.scores[keep],
            label_ids=self.label_ids[keep],
            masks=pick(self.masks),
            mask_scores=pick(self.mask_scores),
            uncertainty=pick(self.uncertainty),
            features=pick(self.features),
        )

    def with_masks(self, masks: np.ndarray, mask_scores: np.ndarray) -> Regions:
        """A copy carrying segmentation masks and their quality scores."""
        return replace(self, masks=masks, mask_scores=mask_scores)

    def to_dict(self, include_masks: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; masks are written as COCO RLE when asked for."""
        from prelabel.geometry import mask_to_rle
        from prelabel.uncertainty import feature_dict

        out: dict[str, Any] = {
            "image_size": list(self.image_size),
            "label_names": list(self.label_names),
            "meta": self.meta,
            "regions": [],
        }
        for i in range(len(self)):
            region: dict[str, Any] = {
                "label": self.label_names[int(self.label_ids[i])],
                "box_xyxy": [round(float(v), 2) for v in self.boxes_xyxy[i]],
                "score": round(float(self.scores[i]), 4),
            }
            if self.mask_scores is not None:
                region["mask_score"] = round(float(self.mask_scores[i]), 4)
            if self.uncertainty is not None:
                region["uncertainty"] = round(float(self.uncertainty[i]), 4)
            if self.features is not None:
                region["features"] = feature_dict(self.features[i])
            if include_masks and self.masks is not None:
                region["mask_rle"] = mask_to_rle(self.masks[i])
            out["regions"].append(region)
        return out


def _vector(value: Any, n: int, dtype: type, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=dtype).reshape(-1)
    if len(array) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(array)}")
    return array
