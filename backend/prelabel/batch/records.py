"""Checkpoint records: one finished image (its regions, masks as COCO RLE) or one unreadable image."""

from __future__ import annotations

from typing import Any

import numpy as np

from prelabel.batch.sources import ImageItem
from prelabel.geometry import rle_to_mask
from prelabel.regions import Regions
from prelabel.uncertainty import FEATURES


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


def record_regions(record: dict[str, Any]) -> Regions:
    """The Regions stored in a record (masks decoded when present)."""
    names = tuple(record["label_names"])
    regions = record["regions"]
    width, height = record["image_size"]
    optional = {
        field: np.array([r[field] for r in regions], dtype=np.float32)
        for field in ("mask_score", "uncertainty")
        if regions and all(field in r for r in regions)
    }
    features = None
    if regions and all("features" in r for r in regions):
        features = np.array([[r["features"][name] for name in FEATURES] for r in regions], dtype=np.float32)
    masks = None
    if regions and all("mask_rle" in r for r in regions):
        masks = np.stack([rle_to_mask(r["mask_rle"]) for r in regions])
    return Regions(
        (width, height),
        names,
        np.array([r["box_xyxy"] for r in regions], dtype=np.float32).reshape(-1, 4),
        np.array([r["score"] for r in regions], dtype=np.float32),
        np.array([names.index(r["label"]) for r in regions], dtype=np.int64),
        masks=masks,
        mask_scores=optional.get("mask_score"),
        uncertainty=optional.get("uncertainty"),
        features=features,
        meta={"model_version": record["model_version"], "random_weights": record["random_weights"]},
    )
