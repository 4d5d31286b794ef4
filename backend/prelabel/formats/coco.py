"""Regions -> COCO instances (boxes, polygon or RLE segmentation, scores)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from prelabel.core.geometry import xyxy_to_xywh
from prelabel.core.regions import Regions

Segmentation = Literal["polygon", "rle", "none"]


def coco_document(
    images: Sequence[tuple[str, tuple[int, int]]],
    regions: Iterable[Regions],
    label_names: Sequence[str],
    segmentation: Segmentation = "rle",
    include_scores: bool = True,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A COCO instances dict: one image per ``(file_name, (width, height))`` in the given order, ids from 1, and the
    annotations of ``regions`` (one Regions per image, same order).

    ``"annotations"`` is an iterator, made as it is consumed (write the document with
    :func:`prelabel.formats.json_stream.write_json`, or ``list`` it): an image's regions are needed only while its
    annotations are made. Categories follow ``label_names`` (id = position + 1). ``include_scores`` adds each
    region's ``score`` (and ``mask_score``) the way COCO results carry them.
    """
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(label_names)]
    return {"info": info or {}, "licenses": [],
            "images": [{"id": image_id, "file_name": file_name, "width": width, "height": height}
                       for image_id, (file_name, (width, height)) in enumerate(images, start=1)],
            "annotations": _annotations(regions, label_names, segmentation, include_scores),
            "categories": categories}


def _annotations(regions_per_image: Iterable[Regions], label_names: Sequence[str], segmentation: Segmentation,
                 include_scores: bool) -> Iterator[dict[str, Any]]:
    category_of = {name: i + 1 for i, name in enumerate(label_names)}
    next_id = 1
    for image_id, regions in enumerate(regions_per_image, start=1):
        for i in range(len(regions)):
            annotation = _annotation(regions, i, segmentation)
            if annotation is None:
                continue
            annotation.update(id=next_id, image_id=image_id,
                              category_id=category_of[regions.label_names[int(regions.label_ids[i])]])
            next_id += 1
            if include_scores:
                annotation["score"] = round(float(regions.scores[i]), 4)
                if regions.mask_scores is not None:
                    annotation["mask_score"] = round(float(regions.mask_scores[i]), 4)
            yield annotation


def _annotation(regions: Regions, i: int, segmentation: Segmentation) -> dict[str, Any] | None:
    box = [round(float(v), 2) for v in xyxy_to_xywh(regions.boxes_xyxy[i])[0]]
    annotation: dict[str, Any] = {"bbox": box, "area": round(box[2] * box[3], 2), "iscrowd": 0}
    area = 0 if regions.masks is None else int(regions.masks.crops[i].sum())
    if segmentation == "none" or area == 0:
        if segmentation == "polygon":  # polygon consumers (CVAT) need a shape: the box outline
            x, y, w, h = box
            annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        return annotation
    annotation["area"] = area
    if segmentation == "rle":
        annotation["segmentation"] = regions.masks.rle(i)
        return annotation
    polygons = regions.masks.polygons(i, parts="all")
    if not polygons:
        return None
    annotation["segmentation"] = [[round(float(v), 2) for v in polygon.ravel()] for polygon in polygons]
    return annotation
