"""Boxes, masks, polygons and RLE, built on OpenCV and pycocotools."""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pycocotools import mask as mask_utils

PartPolicy = Literal["largest", "all"]


def clip_boxes(boxes_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to ``[0, width] x [0, height]``, with x1 <= x2 and y1 <= y2."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    boxes[:, 2] = np.maximum(boxes[:, 0], boxes[:, 2])
    boxes[:, 3] = np.maximum(boxes[:, 1], boxes[:, 3])
    return boxes


def xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` to ``[x, y, w, h]``."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, 2:] -= boxes[:, :2]
    return boxes


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(len(a), len(b))`` of two box sets."""
    if len(a_xyxy) == 0 or len(b_xyxy) == 0:
        return np.zeros((len(a_xyxy), len(b_xyxy)))
    return np.asarray(mask_utils.iou(xyxy_to_xywh(a_xyxy), xyxy_to_xywh(b_xyxy), [0] * len(b_xyxy)))


def mask_iou(a_masks: np.ndarray, b_masks: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(len(a), len(b))`` of two sets of same-size bool masks ``(N, H, W)`` (pycocotools RLE)."""
    if len(a_masks) == 0 or len(b_masks) == 0:
        return np.zeros((len(a_masks), len(b_masks)))
    encode = lambda m: mask_utils.encode(np.asfortranarray(np.moveaxis(np.asarray(m), 0, -1), dtype=np.uint8))
    return np.asarray(mask_utils.iou(encode(a_masks), encode(b_masks), [0] * len(b_masks)))


def nms_per_label(
    boxes_xyxy: np.ndarray, scores: np.ndarray, label_ids: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Indices kept by class-aware non-maximum suppression, best score first."""
    if len(boxes_xyxy) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = cv2.dnn.NMSBoxesBatched(
        xyxy_to_xywh(boxes_xyxy).tolist(),
        np.asarray(scores, dtype=np.float64).tolist(),
        np.asarray(label_ids, dtype=np.int64).tolist(),
        score_threshold=0.0,
        nms_threshold=float(iou_threshold),
    )
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]


def mask_to_box(masks: np.ndarray) -> np.ndarray:
    """Tight ``[x1, y1, x2, y2]`` boxes (x2, y2 exclusive) of a mask ``(H, W)`` or masks ``(N, H, W)``.

    An empty mask gives zeros. One pass of ``any`` per axis, vectorised over the stack.
    """
    masks = np.asarray(masks, dtype=bool)
    rows, cols = masks.any(axis=-1), masks.any(axis=-2)
    height, width = rows.shape[-1], cols.shape[-1]
    boxes = np.stack([cols.argmax(-1), rows.argmax(-1), width - cols[..., ::-1].argmax(-1),
                      height - rows[..., ::-1].argmax(-1)], axis=-1).astype(np.float32)
    boxes[~rows.any(axis=-1)] = 0
    return boxes


def box_to_mask(box_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """A filled ``(H, W)`` mask of a pixel box."""
    mask = np.zeros((height, width), dtype=bool)
    x1, y1, x2, y2 = np.round(clip_boxes(box_xyxy, width, height)[0]).astype(int)
    mask[y1:y2, x1:x2] = True
    return mask


def mask_to_polygons(
    mask: np.ndarray,
    tolerance: float = 0.01,
    max_vertices: int = 100,
    parts: PartPolicy = "largest",
    min_part_area: float = 0.01,
) -> list[np.ndarray]:
    """Simplified outer polygons ``(K, 2)`` of a mask, in pixel coordinates inside the image.

    ``tolerance`` is the simplification distance as a fraction of each part's perimeter; it is raised
    until a polygon has at most ``max_vertices`` points. Holes are filled (Label Studio and CVAT
    polygons cannot hold them). ``parts="largest"`` keeps the largest part, ``"all"`` one polygon per
    part; parts smaller than ``min_part_area`` of the largest are dropped. Empty masks give ``[]``.
    """
    if max_vertices < 3:
        raise ValueError("max_vertices must be at least 3")
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    areas = np.array([cv2.contourArea(c) for c in contours])
    order = np.argsort(-areas)
    if parts == "largest":
        order = order[:1]
    height, width = mask.shape
    polygons = []
    for i in order:
        if areas[i] < min_part_area * areas[order[0]]:
            continue
        polygon = _simplify(contours[i], tolerance, max_vertices)
        polygon[:, 0] = polygon[:, 0].clip(0, width)
        polygon[:, 1] = polygon[:, 1].clip(0, height)
        polygons.append(polygon)
    return polygons


def _simplify(contour: np.ndarray, tolerance: float, max_vertices: int) -> np.ndarray:
    perimeter = cv2.arcLength(contour, closed=True)
    epsilon = max(tolerance * perimeter, 0.5)
    approx = cv2.approxPolyDP(contour, epsilon, closed=True)
    while len(approx) > max_vertices:
        epsilon *= 1.5
        approx = cv2.approxPolyDP(contour, epsilon, closed=True)
    if len(approx) < 3 or cv2.contourArea(approx) == 0:
        # A part one pixel thin has no area between pixel centres: outline its pixels' edges instead.
        x, y, w, h = cv2.boundingRect(contour)
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)
    # Contours run through pixel centres; +0.5 puts vertices on the pixel grid the mask covers.
    return approx.reshape(-1, 2).astype(np.float32) + 0.5


def polygon_to_mask(polygon: np.ndarray, width: int, height: int) -> np.ndarray:
    """Rasterise one pixel polygon ``(K, 2)`` into an ``(H, W)`` mask."""
    mask = np.zeros((height, width), dtype=np.uint8)
    points = np.round(np.asarray(polygon, dtype=np.float64) - 0.5).astype(np.int32)
    cv2.fillPoly(mask, [points.reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE ``{"size": [H, W], "counts": str}`` of a mask."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed string or uncompressed list counts) into a bool mask."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    else:
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon ``(K, 2)``."""
    return float(cv2.contourArea(np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)))
