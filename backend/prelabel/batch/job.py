"""The batch job: sources -> labeler -> checkpoint -> outputs, for images (local or Ray engine) and videos.

Runnable from Python (a notebook, a Ray driver, a test) with a :class:`JobOptions`; ``prelabel batch`` parses its
arguments into one. Rerunning the same job resumes it: images already in the checkpoint are not labeled again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from prelabel.batch.checkpoint import Checkpoint
from prelabel.batch.outputs import FORMATS, VIDEO_FORMATS, check_formats, task_config, write_outputs
from prelabel.batch.ray_engine import RayResources, run_ray
from prelabel.batch.records import ImageItem
from prelabel.batch.runner import BatchOptions, run_local
from prelabel.batch.sources import LS_PREFIX, ImageLoader, open_project, push_predictions, resolve_source
from prelabel.batch.video import run_video_batch, video_sources
from prelabel.core.errors import ExitCode, PrelabelError
from prelabel.core.labels import LabelPrompt
from prelabel.formats.coco import Segmentation
from prelabel.formats.yolo import YoloTask
from prelabel.models.specs import is_random
from prelabel.pipeline import build_labeler, planned_model_version
from prelabel.pipeline.build import with_overrides
from prelabel.pipeline.video import VideoConfig, VideoLabeler
from prelabel.settings import Settings

log = logging.getLogger("prelabel.batch")
CHECKPOINT = "checkpoint.jsonl"


@dataclass(frozen=True)
class JobOptions:
    """What a batch job labels, how, and what it writes (the models and thresholds are the job's Settings)."""

    source: str  # folder (recursive), glob, .jsonl/.csv manifest, ls:PROJECT_ID, a video or a folder of videos
    out: Path  # output folder (also holds the checkpoint)
    labels: Sequence[LabelPrompt]
    formats: Sequence[str] | None = None  # None: every format (images: FORMATS, videos: VIDEO_FORMATS)
    with_masks: bool = True
    tile: int | None = None  # sliced inference: tile size in pixels
    overlap: float = 0.2  # tile overlap, a fraction of ``tile``
    resume: bool = False  # fail unless there is a checkpoint to resume (resuming is the default anyway)
    restart: bool = False  # discard an existing checkpoint and start over
    coco_segmentation: Segmentation = "rle"
    yolo_task: YoloTask | None = None  # None: segment with masks, detect without
    labelstudio_config: str | None = None  # the tasks' labeling config XML (None: boxes + polygons of the labels)
    image_url_prefix: str = ""  # data.image = prefix + relative key in the Label Studio tasks
    push: bool = False  # ls: sources: store the predictions in the project
    store_embeddings: bool = False  # keep each image's SAM embedding in the embedding store
    prefetch: int = 4  # images decoded ahead in background threads
    threads: int = 0  # local engine: torch threads (0: torch's choice)
    frames: bool = False  # the source folder holds the frames of one video
    engine: Literal["local", "ray"] = "local"
    ray: RayResources = field(default_factory=RayResources)


@dataclass(frozen=True)
class JobResult:
    """What a job wrote (by format, or the video outputs' paths), and the images that failed."""

    written: dict[str, Path] | list[Path]
    failed: tuple[str, ...] = ()  # keys of the images that could not be read or hit a bug
    bugs: tuple[str, ...] = ()  # of those, the ones that hit a bug (a rerun retries them)

    @property
    def exit_code(self) -> ExitCode:
        if self.bugs:
            return ExitCode.BUG
        return ExitCode.SOME_FAILED if self.failed else ExitCode.OK


def run_job(options: JobOptions, settings: Settings) -> JobResult:
    """Resolve the source, open or resume the checkpoint, label what is left, write the outputs."""
    videos = None if options.source.startswith(LS_PREFIX) else video_sources(options.source, options.frames)
    if videos:
        return _run_videos(options, settings, videos)
    formats = list(FORMATS if options.formats is None else options.formats)
    check_formats(formats)
    if options.push and not options.source.startswith(LS_PREFIX):
        raise PrelabelError("--push needs a Label Studio source (ls:PROJECT_ID): its tasks receive the predictions")
    labels = list(options.labels)
    if options.store_embeddings and (options.tile or not options.with_masks):
        raise PrelabelError("--store-embeddings keeps whole-image embeddings: drop --tile / --no-masks, or drop it")
    if options.store_embeddings:
        store = settings.embedding_store_url(default_on=True)
        if store is None:
            raise PrelabelError("--store-embeddings needs an embedding store, but PRELABEL_EMBEDDING_STORE is off: "
                                "set it to a folder or URL (or auto), or drop --store-embeddings")
        settings = with_overrides(settings, embedding_store=store)
    batch_options = BatchOptions(with_masks=options.with_masks, tile=options.tile, overlap=options.overlap)
    project = open_project(options.source, settings, labels)
    # Checked before labeling: an unusable labeling config fails now, not after the run.
    labelstudio_config = task_config(formats, options.push, labels, batch_options.with_masks,
                                     project.label_config if project else options.labelstudio_config)
    items = resolve_source(options.source, project)
    path = options.out / CHECKPOINT
    if options.resume and not path.exists():
        raise PrelabelError(f"--resume: there is no checkpoint at {path}")
    header = {"model_version": planned_model_version(settings, labels), "labels": [label.name for label in labels],
              "options": batch_options.header(), "source": options.source}
    with Checkpoint.open(path, header, restart=options.restart) as checkpoint:
        # An image that hit a bug is tried again (the bug may be fixed); an unreadable one is not.
        todo = [item for item in items if item.key not in checkpoint.records or checkpoint.records[item.key].get("bug")]
        log.info("%d image(s): %d done before, %d to label", len(items), len(items) - len(todo), len(todo))
        started = time.perf_counter()
        if todo:
            _label(options, settings, labels, batch_options, todo, checkpoint)
        elapsed = time.perf_counter() - started
        records = {item.key: checkpoint.records[item.key] for item in items}
    failed = [key for key, record in records.items() if "error" in record]
    bugs = [key for key in failed if records[key].get("bug")]
    new_failed = sum("error" in records[item.key] for item in todo)
    new_bugs = sum(bool(records[item.key].get("bug")) for item in todo)
    if todo:
        log.info("labeled %d image(s), %d unreadable%s, in %.1f s (%.2f images/s, engine %s)",
                 len(todo) - new_failed, new_failed - new_bugs, f", {new_bugs} hit a bug" if new_bugs else "",
                 elapsed, len(todo) / elapsed, options.engine)
    written = write_outputs(options.out, records, labels, formats, labelstudio_config, options.coco_segmentation,
                            options.yolo_task or ("segment" if batch_options.with_masks else "detect"),
                            options.image_url_prefix, settings.review_threshold)
    if project is not None and options.push:
        pushed = push_predictions(project, records, options.out, settings.review_threshold)
        log.info("pushed %d prediction(s) to Label Studio", pushed)
    log.info("wrote %s", ", ".join(str(p) for p in written.values()))
    if bugs:
        log.error("%d of %d image(s) hit a bug in prelabel (tracebacks in %s: please report it); rerun to retry "
                  "them; exit code %d", len(bugs), len(records), written["errors"], ExitCode.BUG)
    if len(failed) > len(bugs):
        log.warning("%d of %d image(s) could not be read and were skipped (see %s)%s", len(failed) - len(bugs),
                    len(records), written["errors"], "" if bugs else f"; exit code {ExitCode.SOME_FAILED:d}")
    return JobResult(written, tuple(failed), tuple(bugs))


def _run_videos(options: JobOptions, settings: Settings, videos: list[Path]) -> JobResult:
    """Videos: tracks per video (resumable per keyframe), written as CVAT video XML, COCO per frame, LS tasks."""
    formats = list(VIDEO_FORMATS if options.formats is None else options.formats)
    video_labeler = VideoLabeler(build_labeler(settings, segmenter=""), VideoConfig.from_settings(settings))
    written = run_video_batch(video_labeler, videos, list(options.labels), options.out, formats, options.restart,
                              settings.video_fps, settings.max_video_frames, url_prefix=options.image_url_prefix)
    return JobResult(written)


def _label(options: JobOptions, settings: Settings, labels: list[LabelPrompt], batch_options: BatchOptions,
           todo: list[ImageItem], checkpoint: Checkpoint) -> None:
    """Run the chosen engine over the images not done yet."""
    if is_random(settings.detector) or is_random(settings.segmenter or None):
        log.warning("random-weight models in use: the regions are NOT real predictions (tests and benchmarks only)")
    if options.engine == "ray":
        run_ray(settings, labels, batch_options, todo, checkpoint, options.ray)
        return
    if options.threads:
        torch.set_num_threads(options.threads)
    loader = ImageLoader(settings)
    run_local(build_labeler(settings), labels, batch_options, todo, loader, checkpoint, options.prefetch)
