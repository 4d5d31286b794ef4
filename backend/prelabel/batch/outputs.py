"""Final batch outputs, rebuilt from the checkpoint in key order so that a resumed run writes the same bytes."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prelabel.batch.records import record_regions
from prelabel.core.labels import LabelPrompt
from prelabel.core.regions import Regions
from prelabel.formats.coco import Segmentation, coco_document
from prelabel.formats.json_stream import write_json
from prelabel.formats.yolo import YoloTask, write_yolo_dataset
from prelabel.labelstudio.config import LabelConfig, image_config, parse_label_config
from prelabel.labelstudio.results import prediction

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
    labelstudio_config: LabelConfig,
    coco_segmentation: Segmentation = "rle",
    yolo_task: YoloTask = "segment",
    image_url_prefix: str = "",
    review_threshold: float = 0.45,
) -> dict[str, Path]:
    """Write the chosen formats and ``errors.jsonl``; returns the written paths by format.

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
        tasks = (labelstudio_task(r, record_regions(r), labelstudio_config, image_url_prefix, review_threshold)
                 for r in done)
        written["labelstudio"] = write_json(out_dir / FILES["labelstudio"], tasks)
    if "yolo" in formats:
        local = [r for r in done if r["task_id"] is None and "://" not in r["uri"]]
        if len(local) < len(done):
            log.warning("YOLO dataset: %d remote image(s) left out (it links local files only)", len(done) - len(local))
        write_yolo_dataset(out_dir / FILES["yolo"], ((r["key"], r["uri"], record_regions(r)) for r in local), names,
                           yolo_task)
        written["yolo"] = out_dir / FILES["yolo"]
    return written


def labelstudio_task(record: dict[str, Any], regions: Regions, config: LabelConfig, image_url_prefix: str,
            review_threshold: float) -> dict[str, Any]:
    """A Label Studio task with its prediction (review notes and uncertainty signals included), ready for the
    project import API or the UI."""
    image = image_url_prefix + record["key"] if image_url_prefix else record["uri"]
    return {"data": {config.image_key: image},
            "predictions": [prediction(regions, config, record["model_version"], review_threshold)]}


def labelstudio_config_for(xml: str | None, labels: Sequence[LabelPrompt], with_masks: bool) -> tuple[str, LabelConfig]:
    """The labeling config XML (the given one, or the default one for ``labels``) and its parsed form."""
    xml = xml or image_config([label.name for label in labels], polygons=with_masks)
    return xml, parse_label_config(xml, {label.name: label for label in labels})


def _info(done: list[dict[str, Any]]) -> dict[str, Any]:
    versions = sorted({r["model_version"] for r in done})
    random = any(r["random_weights"] for r in done)
    description = "prelabel pre-annotations" + (" (RANDOM WEIGHTS: not real predictions)" if random else "")
    return {"description": description, "model_version": ",".join(versions), "random_weights": random}

