"""``prelabel batch``: pre-label a folder, glob, manifest or Label Studio project, with resume."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from prelabel.batch.checkpoint import Checkpoint
from prelabel.batch.outputs import FILES, FORMATS, write_outputs
from prelabel.batch.push import push_predictions
from prelabel.batch.ray_engine import RayResources, run_ray
from prelabel.batch.runner import BatchOptions, run_local
from prelabel.batch.sources import LS_PREFIX, ImageItem, ImageLoader, project_client, project_of, resolve_source
from prelabel.batch.video import VIDEO_FORMATS, run_video_batch, video_sources
from prelabel.cli.common import add_parser, labels_arg, model_args, model_overrides
from prelabel.core.errors import ExitCode, PrelabelError
from prelabel.core.labels import LabelPrompt, parse_labels
from prelabel.labelstudio.client import LabelStudioAccess
from prelabel.labelstudio.tasks import config_for
from prelabel.models.specs import is_random
from prelabel.pipeline import build_labeler, planned_model_version
from prelabel.pipeline.build import with_overrides
from prelabel.pipeline.video import VideoConfig, VideoLabeler
from prelabel.settings import Settings

log = logging.getLogger("prelabel.batch")
CHECKPOINT = "checkpoint.jsonl"


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    batch = add_parser(sub, "batch",
                       description="SOURCE: a folder (recursive), a glob ('data/**/*.jpg'), a .jsonl/.csv manifest "
                                   "of paths or URLs, or ls:PROJECT_ID (a Label Studio project). Rerunning the same "
                                   "command resumes an interrupted run; images that could not be read are listed in "
                                   "errors.jsonl (exit code 3).")
    batch.add_argument("source", help="folder, glob, .jsonl/.csv manifest or ls:PROJECT_ID")
    labels_arg(batch, settings)
    batch.add_argument("--out", type=Path, required=True, help="output folder (also holds the checkpoint)")
    batch.add_argument("--format", default=",".join(FORMATS),
                       help="comma-separated subset of the outputs (coco-polygons: COCO with polygons, for CVAT)")
    model_args(batch, settings)
    batch.add_argument("--no-masks", action="store_true", help="boxes only, skip the segmenter")
    batch.add_argument("--store-embeddings", action="store_true",
                       help="keep each image's SAM embedding in the embedding store (PRELABEL_EMBEDDING_STORE, else "
                            "RUNTIME_CACHE/embeddings) so that annotators' first clicks on these images skip the "
                            "encoder in prelabel serve; not with --tile (tiles are encoded, not the image)")
    batch.add_argument("--tile", type=int, help="sliced inference: tile size in pixels (large images, small objects)")
    batch.add_argument("--overlap", type=float, default=0.2, help="tile overlap, a fraction of --tile")
    batch.add_argument("--resume", action="store_true", help="fail unless there is a checkpoint to resume "
                                                             "(resuming is the default anyway)")
    batch.add_argument("--restart", action="store_true", help="discard an existing checkpoint and start over")
    batch.add_argument("--coco-segmentation", default="rle", choices=["rle", "polygon", "none"],
                       help="mask encoding of coco.json")
    batch.add_argument("--yolo-task", default=None, choices=["detect", "segment"],
                       help="default: segment with masks, detect without")
    batch.add_argument("--labelstudio-config", type=Path, help="Label Studio labeling config XML for the tasks file "
                                                      "(default: boxes + polygons of --labels)")
    batch.add_argument("--image-url-prefix", default="",
                       help="data.image = PREFIX + relative key in the LS tasks file, e.g. /data/local-files/?d=ds1/")
    batch.add_argument("--push", action="store_true", help="for ls:PROJECT sources: store the predictions in the "
                                                           "project through label-studio-sdk")
    batch.add_argument("--prefetch", type=int, default=4, help="images decoded ahead in background threads")
    batch.add_argument("--threads", type=int, default=0,
                       help="local engine: torch threads (0: torch's choice; 1 is faster for small models on a "
                            "busy machine)")
    batch.add_argument("--frames", action="store_true", help="the source folder holds the frames of one video")
    batch.add_argument("--video-every", type=int, help="videos: detect on every Nth frame (PRELABEL_VIDEO_EVERY)")
    batch.add_argument("--engine", default="local", choices=["local", "ray"], help="where the models run")
    batch.add_argument("--ray-address", help="an existing Ray cluster ('auto', 'ray://head:10001'); "
                                             "default: start a local Ray")
    batch.add_argument("--ray-actors", type=int, default=1, help="actors, one model each")
    batch.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="CPUs each actor reserves")
    batch.add_argument("--ray-gpus-per-actor", type=float, default=0.0, help="GPUs each actor reserves")
    batch.add_argument("--ray-local-cpus", type=int, help="CPUs of a Ray started here (default: all)")
    batch.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Resolve images, open/resume the checkpoint, label what is left, write the outputs."""
    videos = None if args.source.startswith(LS_PREFIX) else video_sources(args.source, args.frames)
    if videos:
        return _run_videos(args, settings, videos)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise PrelabelError(f"unknown --format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if args.push and not args.source.startswith(LS_PREFIX):
        raise PrelabelError("--push needs a Label Studio source (ls:PROJECT_ID): its tasks receive the predictions")
    labels = parse_labels(args.labels)
    access = LabelStudioAccess(settings.label_studio_url, settings.label_studio_api_key) \
        if settings.label_studio_url else None
    if args.store_embeddings and (args.tile or args.no_masks):
        raise PrelabelError("--store-embeddings keeps whole-image embeddings: drop --tile / --no-masks, or drop it")
    if args.store_embeddings:
        store = settings.embedding_store_url(default_on=True)
        if store is None:
            raise PrelabelError("--store-embeddings needs an embedding store, but PRELABEL_EMBEDDING_STORE is off: "
                                "set it to a folder or URL (or auto), or drop --store-embeddings")
        settings = with_overrides(settings, embedding_store=store)
    settings = with_overrides(settings, **model_overrides(args, with_masks=not args.no_masks))
    options = BatchOptions(with_masks=not args.no_masks, tile=args.tile, overlap=args.overlap)
    xml, labelstudio_config = None, None
    if "labelstudio" in formats or args.push:  # the tasks' labeling config: the project's, the given one or ours
        xml = args.labelstudio_config.read_text(encoding="utf-8") if args.labelstudio_config else None
        if args.source.startswith(LS_PREFIX):
            xml = project_client(access).label_config(project_of(args.source))
        xml, labelstudio_config = config_for(xml, labels, options.with_masks)
    items = resolve_source(args.source, access)
    path = args.out / CHECKPOINT
    if args.resume and not path.exists():
        raise PrelabelError(f"--resume: there is no checkpoint at {path}")
    header = {"model_version": planned_model_version(settings, labels), "labels": [label.name for label in labels],
              "options": options.header(), "source": args.source}
    with Checkpoint.open(path, header, restart=args.restart) as checkpoint:
        # An image that hit a bug is tried again (the bug may be fixed); an unreadable one is not.
        todo = [item for item in items if item.key not in checkpoint.records or checkpoint.records[item.key].get("bug")]
        log.info("%d image(s): %d done before, %d to label", len(items), len(items) - len(todo), len(todo))
        started = time.perf_counter()
        if todo:
            _label(args, settings, labels, options, todo, access, checkpoint)
        elapsed = time.perf_counter() - started
        records = {item.key: checkpoint.records[item.key] for item in items}
    failed = [key for key, record in records.items() if "error" in record]
    bugs = [key for key in failed if records[key].get("bug")]
    new_failed = sum("error" in records[item.key] for item in todo)
    new_bugs = sum(bool(records[item.key].get("bug")) for item in todo)
    if todo:
        log.info("labeled %d image(s), %d unreadable%s, in %.1f s (%.2f images/s, engine %s)",
                 len(todo) - new_failed, new_failed - new_bugs, f", {new_bugs} hit a bug" if new_bugs else "",
                 elapsed, len(todo) / elapsed, args.engine)
    if xml is not None:
        (args.out / FILES["labelstudio_config"]).write_text(xml + "\n", encoding="utf-8")
    written = write_outputs(args.out, records, labels, formats, labelstudio_config, args.coco_segmentation,
                            args.yolo_task or ("segment" if options.with_masks else "detect"), args.image_url_prefix,
                            settings.review_threshold)
    if args.push:
        pushed = push_predictions(project_client(access), project_of(args.source), records, labelstudio_config,
                                  args.out, settings.review_threshold)
        log.info("pushed %d prediction(s) to Label Studio", pushed)
    log.info("wrote %s", ", ".join(str(p) for p in written.values()))
    if bugs:
        log.error("%d of %d image(s) hit a bug in prelabel (tracebacks in %s: please report it); rerun to retry "
                  "them; exit code %d", len(bugs), len(records), written["errors"], ExitCode.BUG)
    if len(failed) > len(bugs):
        log.warning("%d of %d image(s) could not be read and were skipped (see %s)%s", len(failed) - len(bugs),
                    len(records), written["errors"], "" if bugs else f"; exit code {ExitCode.SOME_FAILED:d}")
    if failed:
        return ExitCode.BUG if bugs else ExitCode.SOME_FAILED
    return ExitCode.OK


def _run_videos(args: argparse.Namespace, settings: Settings, videos: list[Path]) -> int:
    """Videos: tracks per video (resumable per keyframe), written as CVAT video XML, COCO per frame, LS tasks."""
    requested = [f.strip() for f in args.format.split(",") if f.strip()]
    formats = list(VIDEO_FORMATS) if args.format == ",".join(FORMATS) else requested  # the image default: all
    labels = parse_labels(args.labels)
    settings = with_overrides(settings, **model_overrides(args, with_masks=False), video_every=args.video_every)
    video_labeler = VideoLabeler(build_labeler(settings, segmenter=""), VideoConfig.from_settings(settings))
    written = run_video_batch(video_labeler, videos, labels, args.out, formats, args.restart, settings.video_fps,
                              settings.max_video_frames, url_prefix=args.image_url_prefix)
    for path in written:
        print(path)
    return 0


def _label(args: argparse.Namespace, settings: Settings, labels: list[LabelPrompt], options: BatchOptions,
           todo: list[ImageItem], access: LabelStudioAccess | None, checkpoint: Checkpoint) -> None:
    """Run the chosen engine over the images not done yet."""
    if is_random(settings.detector) or is_random(settings.segmenter or None):
        log.warning("random-weight models in use: the regions are NOT real predictions (tests and benchmarks only)")
    if args.engine == "ray":
        resources = RayResources(args.ray_address, args.ray_actors, args.ray_cpus_per_actor,
                                 args.ray_gpus_per_actor, args.ray_local_cpus)
        run_ray(settings, labels, options, todo, settings.max_pixels, access, checkpoint, resources)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    loader = ImageLoader(settings.max_pixels, access, settings.fetch_timeout_s)
    run_local(build_labeler(settings), labels, options, todo, loader, checkpoint, args.prefetch)
