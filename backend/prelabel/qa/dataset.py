"""COCO and Label Studio exports read into one shape list per image and annotator, in pixels."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prelabel.core.errors import PrelabelError
from prelabel.core.shapes import Shape
from prelabel.formats.coco import is_coco, read_coco
from prelabel.labelstudio.result_items import parse_items


class ExportError(PrelabelError):
    """A file that is neither a COCO instances file nor a Label Studio export."""


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
        raise ExportError(f"{path} is not a readable JSON file: {exc}") from exc
    if is_coco(data):
        return "coco", coco_items(data)
    if isinstance(data, list) and all(isinstance(t, dict) and "data" in t for t in data):
        return "labelstudio", task_items(data)
    raise ExportError(f"{path} is neither a COCO instances file nor a Label Studio JSON export (a list of tasks)")


def coco_items(document: dict[str, Any]) -> list[Item]:
    """Items of a COCO file; an ``annotator`` field on annotations (if any) separates annotators."""
    return [Item(image.file_name, image.width, image.height, image.file_name, image.shapes)
            for image in read_coco(document)]


def task_items(tasks: list[dict[str, Any]]) -> list[Item]:
    """Items of a Label Studio export: each annotation is an annotator (``completed_by``); a task without
    annotations is checked through its predictions (each model version an annotator)."""
    items = []
    for task in tasks:
        image = next((v for v in task["data"].values() if isinstance(v, str)), str(task.get("id")))
        item = Item(image, 0, 0, image)
        sources = [(a, f"annotator {_who(a)}") for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        sources = sources or [(p, f"model {p.get('model_version')}") for p in task.get("predictions") or []]
        for entry, annotator in sources:
            results = parse_items(entry.get("result"), where=f"task {task.get('id')} / {annotator} / ")
            shapes = [result.shape(clip=False) for result in results if result.labels]  # unlabeled ones are skipped
            item.annotators.setdefault(annotator, []).extend(shapes)
            if shapes:
                item.width, item.height = shapes[-1].image_size
        items.append(item)
    return items


def _who(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    return str(who.get("email", who.get("id")) if isinstance(who, dict) else who)
