"""Sliced inference for large images with small objects: overlapping tiles, merged back with NMS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from pycocotools import mask as mask_utils

from prelabel.core.errors import PrelabelError
from prelabel.core.geometry import nms_per_label
from prelabel.core.labels import LabelPrompt
from prelabel.core.masks import Masks
from prelabel.core.regions import Regions
from prelabel.pipeline.labeler import Labeler

# A box cut by a tile edge is dropped when this share of it lies inside a whole box of the same label.
TRUNCATED_INSIDE = 0.6


def tile_windows(width: int, height: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``(x1, y1, x2, y2)`` windows of at most ``size`` pixels covering the image, overlapping by ``overlap``
    (a fraction of ``size``); the last row and column are aligned to the image edge."""
    if size < 16:
        raise PrelabelError(f"--tile must be at least 16 pixels, got {size}")
    if not 0.0 <= overlap < 1.0:
        raise PrelabelError(f"--overlap must lie in [0, 1), got {overlap}")
    stride = max(1, round(size * (1 - overlap)))
    return [(x, y, min(x + size, width), min(y + size, height))
            for y in _starts(height, size, stride) for x in _starts(width, size, stride)]


def _starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    return [*range(0, length - size, stride), length - size]


def predict_tiled(
    labeler: Labeler, image: np.ndarray, labels: Sequence[LabelPrompt], size: int, overlap: float,
    with_masks: bool = True,
) -> Regions:
    """Run the labeler per tile and merge: boxes (and masks) shifted back to image coordinates, boxes cut
    by an inner tile edge dropped where a whole copy of them exists (another tile saw the object whole),
    then class-aware NMS. Objects larger than the overlap can stay split: choose ``overlap * size`` above
    the largest object."""
    height, width = image.shape[:2]
    boxes, scores, label_ids, truncated, mask_scores = [], [], [], [], []
    crops: list[dict] = []  # every tile region's mask crop as COCO RLE until the merge picks the kept ones:
    origins: list[np.ndarray] = []  # 64 tiles x 100 regions of up to a tile each would be gigabytes as arrays
    names: tuple[str, ...] = tuple(label.name for label in labels)
    meta: dict = {}
    for x1, y1, x2, y2 in tile_windows(width, height, size, overlap):
        part = labeler.predict(image[y1:y2, x1:x2], labels, with_masks)
        names, meta = part.label_names, part.meta
        local = part.boxes_xyxy
        inner = np.array([x1 > 0, y1 > 0, x2 < width, y2 < height])
        touches = np.stack([local[:, 0] <= 0.5, local[:, 1] <= 0.5,
                            local[:, 2] >= x2 - x1 - 0.5, local[:, 3] >= y2 - y1 - 0.5], axis=1)
        boxes.append(local + np.array([x1, y1, x1, y1], dtype=np.float32))
        scores.append(part.scores)
        label_ids.append(part.label_ids)
        truncated.append((touches & inner).any(axis=1))
        if part.masks is not None:
            mask_scores.append(part.mask_scores)
            crops.extend(mask_utils.encode(np.asfortranarray(crop, dtype=np.uint8)) for crop in part.masks.crops)
            origins.append(part.masks.origins + [x1, y1])
    merged = Regions(
        (width, height), names, np.concatenate(boxes), np.concatenate(scores), np.concatenate(label_ids),
        data={"mask_score": np.concatenate(mask_scores)} if mask_scores else {},
    )
    candidates = _drop_truncated(merged, np.concatenate(truncated))
    within = merged.select(candidates)
    keep = candidates[nms_per_label(within.boxes_xyxy, within.scores, within.label_ids, labeler.config.nms_iou)]
    keep = keep[: labeler.config.max_detections]
    merged = merged.select(keep)
    if origins:
        masks = Masks((width, height), tuple(mask_utils.decode(crops[i]).astype(bool) for i in keep),
                      np.concatenate(origins)[keep])
        merged = merged.with_masks(masks, merged.mask_scores)
    return replace(merged, meta={**meta, "tiles": len(boxes)})


def _drop_truncated(regions: Regions, truncated: np.ndarray) -> np.ndarray:
    """Indices of all regions but the cut ones that lie mostly inside an uncut region of the same label."""
    boxes, label_ids = regions.boxes_xyxy, regions.label_ids
    whole = np.flatnonzero(~truncated)
    result = []
    for index in range(len(regions)):
        same = whole[label_ids[whole] == label_ids[index]] if truncated[index] else whole[:0]
        if len(same):
            lo = np.maximum(boxes[same, :2], boxes[index, :2])
            hi = np.minimum(boxes[same, 2:], boxes[index, 2:])
            inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
            area = max(float(np.prod(boxes[index, 2:] - boxes[index, :2])), 1e-6)
            if (inter / area).max() >= TRUNCATED_INSIDE:
                continue
        result.append(index)
    return np.asarray(result, dtype=np.int64)
