"""Final batch outputs, images and videos, rebuilt from the checkpoint in key order so that a resumed run writes
the same bytes. Each format's writer is its tool's (:mod:`prelabel.formats`, :mod:`prelabel.labelstudio.tasks`,
:mod:`prelabel.cvat.video_xml`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prelabel.batch.records import record_regions
from prelabel.core.errors import PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.core.video import Tracks
from prelabel.cvat.video_xml import cvat_video_xml
from prelabel.formats.coco import Segmentation, coco_document, coco_video_frames
from prelabel.formats.json_stream import write_json
from prelabel.formats.yolo import YoloTask, write_yolo_dataset
from prelabel.labelstudio.tasks import TaskConfig

log = logging.getLogger(__name__)

FORMATS = ("coco", "coco-polygons", "labelstudio", "yolo")
VIDEO_FORMATS = ("cvat", "coco", "labelstudio")
FILES = {"coco": "coco.json", "labelstudio": "labelstudio_tasks.json", "coco-polygons": "coco_polygons.json",
         "yolo": "yolo",
         "errors": "errors.jsonl", "labelstudio_config": "labelstudio_config.xml"}


def check_formats(formats: Sequence[str], videos: bool = False) -> None:
    """Refuse a format the source's kind has no writer for."""
    known = VIDEO_FORMATS if videos else FORMATS
    unknown = sorted(set(formats) - set(known))
    if unknown:
        raise PrelabelError(f"unknown --format {', '.join(unknown)}{' for videos' if videos else ''}; choose from "
                            f"{', '.join(known)}")


def task_config(formats: Sequence[str], push: bool, labels: Sequence[LabelPrompt], with_masks: bool,
                xml: str | None = None) -> TaskConfig | None:
    """The labeling config the Label Studio tasks (or pushed predictions) are written for: ``xml`` (the project's
    or the user's), else boxes and, with masks, polygons of ``labels``; None when no output needs one."""
    return TaskConfig.for_images(labels, with_masks, xml) if "labelstudio" in formats or push else None


def write_outputs(
    out_dir: Path,
    records: dict[str, dict[str, Any]],
    labels: Sequence[LabelPrompt],
    formats: Sequence[str],
    labelstudio_config: TaskConfig | None = None,
    coco_segmentation: Segmentation = "rle",
    yolo_task: YoloTask = "segment",
    image_url_prefix: str = "",
    review_threshold: float = 0.45,
) -> dict[str, Path]:
    """Write the chosen formats and ``errors.jsonl``; returns the written paths by format. ``labelstudio_config``
    (see :func:`task_config`) is needed by the ``labelstudio`` format only, and is written when given.

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
    if labelstudio_config is not None:
        written["labelstudio_config"] = out_dir / FILES["labelstudio_config"]
        written["labelstudio_config"].write_text(labelstudio_config.xml + "\n", encoding="utf-8")
    if "labelstudio" in formats:
        if labelstudio_config is None:
            raise ValueError("the labelstudio format needs the tasks' labeling config")
        tasks = (labelstudio_config.image_task(image_url_prefix + r["key"] if image_url_prefix else r["uri"],
                                               record_regions(r), r["model_version"], review_threshold) for r in done)
        written["labelstudio"] = write_json(out_dir / FILES["labelstudio"], tasks)
    if "yolo" in formats:
        local = [r for r in done if r["task_id"] is None and "://" not in r["uri"]]
        if len(local) < len(done):
            log.warning("YOLO dataset: %d remote image(s) left out (it links local files only)", len(done) - len(local))
        write_yolo_dataset(out_dir / FILES["yolo"], ((r["key"], r["uri"], record_regions(r)) for r in local), names,
                           yolo_task)
        written["yolo"] = out_dir / FILES["yolo"]
    return written


def write_video_outputs(out_dir: Path, tracks: dict[str, Tracks], videos: dict[str, str], labels: Sequence[LabelPrompt],
                        formats: Sequence[str], model_version: str, url_prefix: str = "") -> list[Path]:
    """Write each video's ``tracks`` (by key) in the chosen formats; ``videos`` names each key's file, which the
    Label Studio tasks point at (after ``url_prefix``). Returns the written files."""
    written = []
    for key, video_tracks in tracks.items():
        if "cvat" in formats:
            written.append(_write(out_dir / "cvat" / f"{key}.xml", cvat_video_xml(video_tracks, key)))
        if "coco" in formats:
            written.append(_write(out_dir / "coco" / f"{key}.json", json.dumps(coco_video_frames(video_tracks, key))))
    if "labelstudio" in formats:
        config = TaskConfig.for_videos(labels)
        tasks = [config.video_task(f"{url_prefix}{videos[key]}", video_tracks, model_version)
                 for key, video_tracks in tracks.items()]
        written.append(_write(out_dir / "labelstudio_video_tasks.json", json.dumps(tasks)))
        written.append(_write(out_dir / "labelstudio_video_config.xml", config.xml))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _info(done: list[dict[str, Any]]) -> dict[str, Any]:
    versions = sorted({r["model_version"] for r in done})
    random = any(r["random_weights"] for r in done)
    description = "prelabel pre-annotations" + (" (RANDOM WEIGHTS: not real predictions)" if random else "")
    return {"description": description, "model_version": ",".join(versions), "random_weights": random}

