"""Regions to CVAT: Nuclio detector and interactor replies, and cvat-sdk shapes.

All coordinates are absolute pixels. Nuclio replies are plain JSON (Python ints and floats only).
``cvat_sdk`` is imported only by the sdk helpers, so the Nuclio image does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from prelabel.core.geometry import box_to_mask, mask_to_box, mask_to_polygons
from prelabel.core.regions import Regions

if TYPE_CHECKING:
    from cvat_sdk.auto_annotation import InteractionResultShape
    from cvat_sdk.models import LabeledShapeRequest

SHAPE_TYPES = ("mask", "polygon", "rectangle")
"""The CVAT shape types a label of ours can promise."""

DETECTOR_POLYGON = {"tolerance": 0.01, "max_vertices": 100}
# The UI simplifies interactor polygons itself (its accuracy slider): send them detailed.
INTERACTOR_POLYGON = {"tolerance": 0.002, "max_vertices": 1000}


def region_mask(regions: Regions, index: int) -> np.ndarray:
    """The mask of one region; its filled box when there is no mask or the mask is empty."""
    if regions.masks is not None and regions.masks[index].any():
        return regions.masks[index]
    width, height = regions.image_size
    return box_to_mask(regions.boxes_xyxy[index], width, height)


def polygon_points(mask: np.ndarray, tolerance: float, max_vertices: int) -> list[float]:
    """The outline of the mask's largest part as a flat ``[x1, y1, x2, y2, ...]``; ``[]`` if it has none."""
    polygons = mask_to_polygons(mask, tolerance, max_vertices)
    return _floats(polygons[0].ravel()) if polygons else []


def mask_crop(mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The tight crop of a non-empty mask and its inclusive box ``[xtl, ytl, xbr, ybr]``."""
    x1, y1, x2, y2 = (int(v) for v in mask_to_box(mask))
    return mask[y1:y2, x1:x2], [x1, y1, x2 - 1, y2 - 1]


def detector_items(regions: Regions, label_types: Mapping[str, str]) -> list[dict[str, Any]]:
    """The reply of a Nuclio detector: one item per region, of the type its label has in the spec.

    A ``mask`` item carries the raw 0/1 crop values followed by the inclusive box (CVAT encodes them
    itself) and, in ``points``, a polygon that CVAT uses when the user asks for polygons.
    """
    items = []
    for index, (name, score) in enumerate(zip(regions.labels, regions.scores, strict=True)):
        kind = label_types[name]
        item: dict[str, Any] = {"label": name, "type": kind, "confidence": float(score)}
        if kind == "rectangle":
            item["points"] = _floats(regions.boxes_xyxy[index])
            items.append(item)
            continue
        mask = region_mask(regions, index)
        if not mask.any():
            continue
        polygon = polygon_points(mask, **DETECTOR_POLYGON)
        if polygon:
            item["points"] = polygon
        elif kind == "polygon":
            continue
        if kind == "mask":
            crop, bbox = mask_crop(mask)
            item["mask"] = crop.astype(np.uint8).ravel().tolist() + bbox
        items.append(item)
    return items


def interactor_reply(mask: np.ndarray) -> dict[str, Any]:
    """The reply of a Nuclio interactor: the mask's crop as 2-D 0/1 rows, its inclusive bounds and outline pairs."""
    if not mask.any():
        return {"mask": [[0]], "bounds": [0, 0, 0, 0], "points": []}
    crop, bounds = mask_crop(mask)
    outline = polygon_points(mask, **INTERACTOR_POLYGON)
    return {
        "mask": crop.astype(np.uint8).tolist(),
        "bounds": bounds,
        "points": [outline[i : i + 2] for i in range(0, len(outline), 2)],
    }


def sdk_shapes(
    regions: Regions, label_specs: Mapping[str, tuple[int, str]], conv_mask_to_poly: bool
) -> list[LabeledShapeRequest]:
    """cvat-sdk shapes of the regions; ``label_specs`` maps a label name to its spec id and type.

    ``mask`` labels give polygons when ``conv_mask_to_poly`` is set (the sdk rejects masks then).
    """
    # optional: the [cvat] extra (cvat-cli's agents have it; the Nuclio handlers do not need it)
    import cvat_sdk.auto_annotation as cvataa
    from cvat_sdk.masks import encode_mask

    shapes = []
    for index, (name, score) in enumerate(zip(regions.labels, regions.scores, strict=True)):
        spec_id, kind = label_specs[name]
        if kind == "rectangle":
            shapes.append(cvataa.rectangle(spec_id, _floats(regions.boxes_xyxy[index]), score=float(score)))
            continue
        mask = region_mask(regions, index)
        if not mask.any():
            continue
        if kind == "mask" and not conv_mask_to_poly:
            shapes.append(cvataa.mask(spec_id, encode_mask(mask), score=float(score)))
        elif polygon := polygon_points(mask, **DETECTOR_POLYGON):
            shapes.append(cvataa.polygon(spec_id, polygon, score=float(score)))
    return shapes


def sdk_interaction_shapes(mask: np.ndarray, score: float) -> list[InteractionResultShape]:
    """The result of a cvat-sdk interaction function: one mask shape with its confidence, none if empty."""
    # optional: the [cvat] extra (cvat-cli's agents have it; the Nuclio handlers do not need it)
    import cvat_sdk.auto_annotation as cvataa
    from cvat_sdk.masks import encode_mask
    from cvat_sdk.models import AttributeValRequest

    if not mask.any():
        return []
    confidence = AttributeValRequest(spec_id=cvataa.InteractionResultAttributes.CONFIDENCE, value=f"{score:.4f}")
    return [cvataa.InteractionResultShape(type="mask", points=encode_mask(mask), attributes=[confidence])]


def _floats(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in values]
