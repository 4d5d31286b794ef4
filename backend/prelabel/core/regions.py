"""The one data type that flows from the models through the pipeline to every format adapter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prelabel.core.features import FEATURES
from prelabel.core.masks import Masks

# Named sub-columns of 2-D per-region data (written as {name: value} in JSON).
COLUMN_NAMES: dict[str, tuple[str, ...]] = {"features": FEATURES}
_BASE_KEYS = ("label", "box_xyxy", "score", "mask_rle")


@dataclass(frozen=True)
class Regions:
    """Detected regions of one image, in pixel coordinates of the image as the annotator sees it.

    Attributes:
        image_size: ``(width, height)`` in pixels.
        label_names: every label the request asked for; ``label_ids`` index into it.
        boxes_xyxy: ``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]``, clipped to the image.
        scores: ``(N,)`` detector confidence in ``[0, 1]``.
        label_ids: ``(N,)`` int64 indices into ``label_names``.
        masks: optional :class:`~prelabel.core.masks.Masks`, each region's mask as the crop of its box (an
            ``(N, H, W)`` bool array given here is cropped); ``masks[i]`` is region ``i``'s full-frame mask.
        data: extra per-region columns, each ``(N,)`` or ``(N, K)`` (as supervision's ``Detections.data``):
            ``mask_score`` (the segmenter's predicted IoU), ``uncertainty`` (``1 - confidence``; higher means
            a human should look first), ``features`` (the uncertainty signals, columns named by
            :data:`prelabel.core.features.FEATURES`), or any other.
        meta: free-form provenance (model ids, ``random_weights``, ``model_version``, timings).
    """

    image_size: tuple[int, int]
    label_names: tuple[str, ...]
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    label_ids: np.ndarray
    masks: Masks | None = None
    data: Mapping[str, np.ndarray] = field(default_factory=dict)
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
        object.__setattr__(self, "data", {name: _column(value, n, name) for name, value in self.data.items()
                                          if value is not None})
        if n and (self.label_ids.min() < 0 or self.label_ids.max() >= len(self.label_names)):
            raise ValueError("label_ids must index label_names")
        if n and (boxes[:, 2] < boxes[:, 0]).any() | (boxes[:, 3] < boxes[:, 1]).any():
            raise ValueError("boxes must satisfy x1 <= x2 and y1 <= y2")
        if n and ((boxes < 0).any() or (boxes[:, [0, 2]] > width).any() or (boxes[:, [1, 3]] > height).any()):
            raise ValueError("boxes must lie inside the image; clip them first")
        if n and ((self.scores < 0) | (self.scores > 1)).any():
            raise ValueError("scores must lie in [0, 1]")
        if self.masks is not None:
            masks = self.masks if isinstance(self.masks, Masks) else Masks.from_dense(self.masks)
            if masks.shape != (n, height, width):
                raise ValueError(f"masks must have shape {(n, height, width)}, got {masks.shape}")
            object.__setattr__(self, "masks", masks)

    def __len__(self) -> int:
        return len(self.boxes_xyxy)

    @property
    def labels(self) -> list[str]:
        """The label name of each region."""
        return [self.label_names[i] for i in self.label_ids]

    @property
    def mask_scores(self) -> np.ndarray | None:
        """``(N,)`` segmenter quality (predicted IoU) in ``[0, 1]``, when segmented."""
        return self.data.get("mask_score")

    @property
    def uncertainty(self) -> np.ndarray | None:
        """``(N,)`` ``1 - confidence``, when scored."""
        return self.data.get("uncertainty")

    @property
    def features(self) -> np.ndarray | None:
        """``(N, len(FEATURES))`` uncertainty signals, when scored."""
        return self.data.get("features")

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
        return replace(
            self,
            boxes_xyxy=self.boxes_xyxy[keep],
            scores=self.scores[keep],
            label_ids=self.label_ids[keep],
            masks=None if self.masks is None else self.masks.select(keep),
            data={name: value[keep] for name, value in self.data.items()},
        )

    def with_data(self, **columns: np.ndarray | None) -> Regions:
        """A copy with these per-region columns set (``None`` removes one)."""
        data = {**self.data, **columns}
        return replace(self, data={k: v for k, v in data.items() if v is not None})

    def with_masks(self, masks: Masks | np.ndarray, mask_scores: np.ndarray) -> Regions:
        """A copy carrying segmentation masks and their quality scores."""
        return replace(self, masks=masks).with_data(mask_score=mask_scores)

    def to_dict(self, include_masks: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of :meth:`from_dict`); masks are written as COCO RLE when asked for."""
        regions = []
        for i in range(len(self)):
            region: dict[str, Any] = {
                "label": self.label_names[int(self.label_ids[i])],
                "box_xyxy": [round(float(v), 2) for v in self.boxes_xyxy[i]],
                "score": round(float(self.scores[i]), 4),
            }
            for name, column in self.data.items():
                region[name] = _json_value(name, column[i])
            if include_masks and self.masks is not None:
                region["mask_rle"] = self.masks.rle(i)
            regions.append(region)
        return {"image_size": list(self.image_size), "label_names": list(self.label_names), "meta": self.meta,
                "regions": regions}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Regions:
        """Regions from :meth:`to_dict`'s output; a column is kept when every region has it."""
        names = tuple(document["label_names"])
        regions = list(document["regions"])
        width, height = document["image_size"]
        columns = {key for region in regions for key in region if key not in _BASE_KEYS}
        data = {name: np.array([_array_value(name, r[name]) for r in regions], dtype=np.float32)
                for name in sorted(columns) if all(name in r for r in regions)}
        masks = None
        if regions and all("mask_rle" in r for r in regions):
            masks = Masks.from_rles((int(width), int(height)), (r["mask_rle"] for r in regions))
        return cls(
            (int(width), int(height)), names,
            np.array([r["box_xyxy"] for r in regions], dtype=np.float32).reshape(-1, 4),
            np.array([r["score"] for r in regions], dtype=np.float32),
            np.array([names.index(r["label"]) for r in regions], dtype=np.int64),
            masks=masks, data=data, meta=dict(document.get("meta") or {}),
        )


def _vector(value: Any, n: int, dtype: type, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=dtype).reshape(-1)
    if len(array) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(array)}")
    return array


def _column(value: Any, n: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim not in (1, 2) or len(array) != n:
        raise ValueError(f"data column {name!r} must have shape (N={n},) or (N={n}, K), got {array.shape}")
    return array


def _json_value(name: str, value: np.ndarray) -> Any:
    if value.ndim == 0:
        return round(float(value), 4)
    keys = COLUMN_NAMES.get(name)
    if keys is not None and len(keys) == len(value):
        return {key: round(float(v), 4) for key, v in zip(keys, value)}
    return [round(float(v), 4) for v in value]


def _array_value(name: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return [value[key] for key in COLUMN_NAMES[name]]
    return value
