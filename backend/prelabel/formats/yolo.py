"""Regions -> a YOLO detection or segmentation dataset (Ultralytics layout) for distilling a small model."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import yaml

from prelabel.core.regions import Regions

YoloTask = Literal["detect", "segment"]


def yolo_lines(regions: Regions, task: YoloTask) -> list[str]:
    """One ``class cx cy w h`` (detect) or ``class x1 y1 x2 y2 ...`` (segment) line per region, normalised
    to ``[0, 1]``. A region without a usable mask is written as its box outline in segment mode."""
    width, height = regions.image_size
    lines = []
    for i in range(len(regions)):
        x1, y1, x2, y2 = (float(v) for v in regions.boxes_xyxy[i])
        cls = int(regions.label_ids[i])
        if task == "detect":
            values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
        else:
            polygons = regions.masks.polygons(i) if regions.masks is not None else []
            points = polygons[0] if polygons else [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
            values = [v for x, y in points for v in (float(x) / width, float(y) / height)]
        lines.append(" ".join([str(cls), *(f"{v:.6f}" for v in values)]))
    return lines


def write_yolo_dataset(
    root: Path, images: Iterable[tuple[str, str, Regions]], label_names: Sequence[str], task: YoloTask,
) -> int:
    """Write ``root/data.yaml``, ``root/labels/<key>.txt`` and ``root/images/<key>`` links to local files
    for each ``(key, local_path, regions)``, one image at a time. Returns how many images were written."""
    root.mkdir(parents=True, exist_ok=True)  # data.yaml is written even when no image is
    count = 0
    for key, path, regions in images:
        count += 1
        image_link = root / "images" / key
        label_file = (root / "labels" / key).with_suffix(".txt")
        image_link.parent.mkdir(parents=True, exist_ok=True)
        label_file.parent.mkdir(parents=True, exist_ok=True)
        if image_link.is_symlink() or image_link.exists():
            image_link.unlink()
        image_link.symlink_to(os.path.abspath(path))
        label_file.write_text("".join(f"{line}\n" for line in yolo_lines(regions, task)), encoding="utf-8")
    # No "path": Ultralytics then resolves images/ next to data.yaml, wherever the folder is moved.
    data = {"train": "images", "val": "images", "task": task,
            "names": dict(enumerate(label_names))}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return count
