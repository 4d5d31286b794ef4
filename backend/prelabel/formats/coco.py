"""COCO instances: Regions and video tracks written (boxes, polygon or RLE segmentation, scores), and read back as
shapes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from prelabel.core.geometry import mask_to_box, rle_to_mask, xyxy_to_xywh
from prelabel.core.regions import Regions
from prelabel.core.shapes import Shape
from prelabel.core.video import Tracks

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


def coco_video_frames(tracks: Tracks, name: str) -> dict[str, Any]:
    """COCO with one image per frame (``file_name`` ``<video>/frame_000123``) and ``track_id`` on each box."""
    info = tracks.info
    images = [{"id": f + 1, "file_name": f"{name}/frame_{f:06d}.jpg", "width": info.width, "height": info.height,
               "frame_index": f} for f in range(info.frame_count)]
    annotations = []
    for track in tracks.tracks:
        for frame, (x1, y1, x2, y2), score in zip(track.frames, track.boxes, track.scores):
            annotations.append({"id": len(annotations) + 1, "image_id": frame + 1, "category_id": track.label_id + 1,
                                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": score,
                                "track_id": track.track_id})
    return {"info": {"description": f"prelabel tracks of {name}", "video": info.to_dict()}, "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(tracks.label_names)]}


# --- reading ----------------------------------------------------------------------------------------------------
@dataclass
class CocoImage:
    """One image of a COCO instances file (width and height 0 when the file does not say) and its shapes by
    annotator: an ``annotator`` field on annotations separates them, else they are all ``"annotations"``."""

    file_name: str
    width: int
    height: int
    shapes: dict[str, list[Shape]] = field(default_factory=dict)


def is_coco(document: Any) -> bool:
    """Whether a parsed JSON document is a COCO instances file."""
    return isinstance(document, dict) and {"images", "annotations", "categories"} <= set(document)


def read_coco(document: Mapping[str, Any]) -> list[CocoImage]:
    """The images of a COCO instances document with their annotations as shapes, in pixels (a polygon keeps its
    first part; an RLE mask gives its box)."""
    names = {c["id"]: c["name"] for c in document["categories"]}
    images = {image["id"]: CocoImage(image["file_name"], int(image.get("width", 0)), int(image.get("height", 0)))
              for image in document["images"]}
    for annotation in document["annotations"]:
        x, y, w, h = (float(v) for v in annotation["bbox"])
        segmentation = annotation.get("segmentation")
        polygon = None
        if isinstance(segmentation, list) and segmentation:
            polygon = np.asarray(segmentation[0], dtype=np.float64).reshape(-1, 2)
        elif isinstance(segmentation, dict):
            x, y, x2, y2 = mask_to_box(rle_to_mask(segmentation))
            w, h = x2 - x, y2 - y
        shape = Shape(names[annotation["category_id"]], np.array([x, y, x + w, y + h]), polygon=polygon,
                      ref=f"annotation {annotation['id']}")
        annotator = str(annotation.get("annotator", "annotations"))
        images[annotation["image_id"]].shapes.setdefault(annotator, []).append(shape)
    return list(images.values())
