"""COCO and Label Studio exports read into one shape list per image and annotator, in pixels."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prelabel.formats.labelstudio import brush_rle_to_mask
from prelabel.geometry import mask_to_box, rle_to_mask


@dataclass(frozen=True)
class Shape:
    """One annotated region: its label, ``[x1, y1, x2, y2]`` box and, for polygons, its ``(K, 2)`` points."""

    ref: str  # where it is in the file: "annotation 12" or "task 3 / annotation 5 / result r1"
    label: str
    box: np.ndarray
    polygon: np.ndarray | None = None


@dataclass
class Item:
    """One image: its key, size (0 when the file does not say), location and shapes by annotator."""

    key: str
    width: int
    height: int
    image: str
    annotators: dict[str, list[Shape]] = field(default_factory=dict)


def load_export(path: Path) -> tuple[str, list[Item]]:
    """``("coco" | "labelstudio", items)`` of a COCO instances file or a Label Studio JSON export."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable JSON file: {exc}") from exc
    if isinstance(data, dict) and {"images", "annotations", "categories"} <= set(data):
        return "coco", coco_items(data)
    if isinstance(data, list) and all(isinstance(t, dict) and "data" in t for t in data):
        return "labelstudio", label_studio_items(data)
    raise ValueError(f"{path} is neither a COCO instances file nor a Label Studio JSON export (a list of tasks)")


def coco_items(document: dict[str, Any]) -> list[Item]:
    """Items of a COCO file; an ``annotator`` field on annotations (if any) separates annotators."""
    names = {c["id"]: c["name"] for c in document["categories"]}
    items = {image["id"]: Item(image["file_name"], int(image.get("width", 0)), int(image.get("height", 0)),
                               image["file_name"]) for image in document["images"]}
    for annotation in document["annotations"]:
        x, y, w, h = (float(v) for v in annotation["bbox"])
        segmentation = annotation.get("segmentation")
        polygon = None
        if isinstance(segmentation, list) and segmentation:
            polygon = np.asarray(segmentation[0], dtype=np.float64).reshape(-1, 2)
        elif isinstance(segmentation, dict):
            x, y, x2, y2 = mask_to_box(rle_to_mask(segmentation))
            w, h = x2 - x, y2 - y
        shape = Shape(f"annotation {annotation['id']}", names[annotation["category_id"]],
                      np.array([x, y, x + w, y + h]), polygon)
        annotator = str(annotation.get("annotator", "annotations"))
        items[annotation["image_id"]].annotators.setdefault(annotator, []).append(shape)
    return list(items.values())


def label_studio_items(tasks: list[dict[str, Any]]) -> list[Item]:
    """Items of a Label Studio export: each annotation is an annotator (``completed_by``); a task without
    annotations is checked through its predictions (each model version an annotator)."""
    items = []
    for task in tasks:
        image = next((v for v in task["data"].values() if isinstance(v, str)), str(task.get("id")))
        item = Item(image, 0, 0, image)
        sources = [(a, f"annotator {_who(a)}") for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        sources = sources or [(p, f"model {p.get('model_version')}") for p in task.get("predictions") or []]
        for number, (entry, annotator) in enumerate(sources):
            shapes = item.annotators.setdefault(annotator, [])
            for result in entry.get("result") or []:
                shape = _ls_shape(result, f"task {task.get('id')} / {annotator} / result {result.get('id', number)}")
                if shape is not None:
                    item.width, item.height = int(result["original_width"]), int(result["original_height"])
                    shapes.append(shape)
        items.append(item)
    return items


def _who(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    return str(who.get("email", who.get("id")) if isinstance(who, dict) else who)


def _ls_shape(result: dict[str, Any], ref: str) -> Shape | None:
    kind, value = result.get("type"), result.get("value", {})
    if kind not in ("rectanglelabels", "polygonlabels", "brushlabels") or not value.get(kind):
        return None
    width, height = float(result["original_width"]), float(result["original_height"])
    scale = np.array([width, height]) / 100
    label = value[kind][0]
    if kind == "rectanglelabels":
        x, y = value["x"] * scale[0], value["y"] * scale[1]
        return Shape(ref, label, np.array([x, y, x + value["width"] * scale[0], y + value["height"] * scale[1]]))
    if kind == "polygonlabels":
        points = np.asarray(value["points"], dtype=np.float64).reshape(-1, 2) * scale
        box = np.concatenate([points.min(axis=0), points.max(axis=0)]) if len(points) else np.zeros(4)
        return Shape(ref, label, box, points)
    return Shape(ref, label, mask_to_box(brush_rle_to_mask(value["rle"], int(width), int(height))).astype(np.float64))
