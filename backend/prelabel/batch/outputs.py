"""Final batch outputs, rebuilt from the checkpoint in key order so that a resumed run writes the same bytes."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prelabel.batch.records import record_regions
from prelabel.core.labels import LabelPrompt
from prelabel.formats.coco import Segmentation, coco_document
from prelabel.formats.json_stream import write_json
from prelabel.formats.yolo import YoloTask, write_yolo_dataset
from prelabel.labelstudio.config import LabelConfig
from prelabel.labelstudio.tasks import image_task

log = logging.getLogger(__name__)

FORMATS = ("coco", "coco-polygons", "labelstudio", "yolo")
FILES = {"coco": "coco.json", "labelstudio": "labelstudio_tasks.json", "coco-polygons": "coco_polygons.json",
         "yolo": "yolo",
         "errors": "errors.jsonl", "labelstudio_config": "labelstudio_config.xml"}


def write_outputs(
    out_dir: Path,
    records: dict[str, dict[str, Any]],
    labels: Sequence[LabelPrompt],
    formats: Sequence[str],
    labelstudio_config: LabelConfig | None = None,
    coco_segmentation: Segmentation = "rle",
    yolo_task: YoloTask = "segment",
    image_url_prefix: str = "",
    review_threshold: float = 0.45,
) -> dict[str, Path]:
    """Write the chosen formats and ``errors.jsonl``; returns the written paths by format. ``labelstudio_config``
    (the tasks' labeling config) is needed by the ``labelstudio`` format only.

    Streamed: each format is written one image at a time, its regions decoded from the checkpoint record (masks as
    box crops) while that image is written, so the memory is one image's regions whatever the run's size.
    """
    ordered = [records[key] for key in sorted(records)]
    done = [record for record in ordered if "error" not in record]
    names = [label.name for label in labels]
    written = {"errors": out_dir / FILES["errors"]}
    written["errors"].write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered if "error" in r),
                                 encoding="utf-8")
    info = _info(done)
    images = [(r["key"], (int(r["image_size"][0]), int(r["image_size"][1]))) for r in done]
    if "coco" in formats:
        document = coco_document(images, map(record_regions, done), names, coco_segmentation, True, info)
        written["coco"] = write_json(out_dir / FILES["coco"], document)
    if "coco-polygons" in formats:  # COCO with polygon segmentations, as CVAT's "COCO 1.0" import wants
        document = coco_document(images, map(record_regions, done), names, "polygon", False, info)
        written["coco-polygons"] = write_json(out_dir / FILES["coco-polygons"], document)
    if "labelstudio" in formats:
        if labelstudio_config is None:
            raise ValueError("the labelstudio format needs the tasks' labeling config")
        tasks = (image_task(image_url_prefix + r["key"] if image_url_prefix else r["uri"], record_regions(r),
                            labelstudio_config, r["model_version"], review_threshold) for r in done)
        written["labelstudio"] = write_json(out_dir / FILES["labelstudio"], tasks)
    if "yolo" in formats:
        local = [r for r in done if r["task_id"] is None and "://" not in r["uri"]]
        if len(local) < len(done):
            log.warning("YOLO dataset: %d remote image(s) left out (it links local files only)", len(done) - len(local))
        write_yolo_dataset(out_dir / FILES["yolo"], ((r["key"], r["uri"], record_regions(r)) for r in local), names,
                           yolo_task)
        written["yolo"] = out_dir / FILES["yolo"]
    return written


def _info(done: list[dict[str, Any]]) -> dict[str, Any]:
    versions = sorted({r["model_version"] for r in done})
    random = any(r["random_weights"] for r in done)
    description = "prelabel pre-annotations" + (" (RANDOM WEIGHTS: not real predictions)" if random else "")
    return {"description": description, "model_version": ",".join(versions), "random_weights": random}

