"""An image to pre-label, and its checkpoint records: its regions (masks as COCO RLE), or why it was not labeled."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prelabel.core.regions import Regions


@dataclass(frozen=True)
class ImageItem:
    """One image to pre-label: a unique sort key, a local path or URL, and its Label Studio task if any."""

    key: str
    uri: str
    task_id: int | None = None

    @property
    def is_local(self) -> bool:
        return urlparse(self.uri).scheme in ("", "file") or Path(self.uri).is_absolute()


def regions_record(item: ImageItem, regions: Regions) -> dict[str, Any]:
    """What later tools need of one image: where it is, its size, the model version and every region."""
    body = regions.to_dict(include_masks=True)
    return {
        "key": item.key,
        "uri": item.uri,
        "task_id": item.task_id,
        "image_size": body["image_size"],
        "model_version": regions.meta.get("model_version"),
        "random_weights": bool(regions.meta.get("random_weights")),
        "label_names": body["label_names"],
        "regions": body["regions"],
    }


def error_record(item: ImageItem, error: str) -> dict[str, Any]:
    """An image that could not be read; it is not retried on resume."""
    return {"key": item.key, "uri": item.uri, "task_id": item.task_id, "error": error}


def bug_record(item: ImageItem, exc: BaseException) -> dict[str, Any]:
    """An image whose labeling hit a bug: the error and its traceback; a resume retries it."""
    return {**error_record(item, f"internal error (a bug, please report it): {type(exc).__name__}: {exc}"),
            "bug": True, "traceback": "".join(traceback.format_exception(exc))}


def record_regions(record: dict[str, Any]) -> Regions:
    """The Regions stored in a record (masks decoded when present)."""
    meta = {"model_version": record["model_version"], "random_weights": record["random_weights"]}
    return Regions.from_dict({**record, "meta": meta})
