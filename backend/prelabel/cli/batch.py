"""``prelabel batch``: pre-label a folder, glob, manifest or Label Studio project, with resume."""

from __future__ import annotations

import argparse
from pathlib import Path

from prelabel.batch.job import JobOptions, run_job
from prelabel.batch.outputs import FORMATS, VIDEO_FORMATS
from prelabel.batch.ray_engine import RayResources
from prelabel.cli.common import add_parser, labels_arg, model_args, model_overrides
from prelabel.core.labels import parse_labels
from prelabel.pipeline.build import with_overrides
from prelabel.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    batch = add_parser(sub, "batch",
                       description="SOURCE: a folder (recursive), a glob ('data/**/*.jpg'), a .jsonl/.csv manifest "
                                   "of paths or URLs, or ls:PROJECT_ID (a Label Studio project). Rerunning the same "
                                   "command resumes an interrupted run; images that could not be read are listed in "
                                   "errors.jsonl (exit code 3).")
    batch.add_argument("source", help="folder, glob, .jsonl/.csv manifest or ls:PROJECT_ID")
    labels_arg(batch, settings)
    batch.add_argument("--out", type=Path, required=True, help="output folder (also holds the checkpoint)")
    batch.add_argument("--format", help=f"comma-separated subset of the outputs (default: every one; images: "
                                        f"{','.join(FORMATS)}, coco-polygons being COCO with polygons, for CVAT; "
                                        f"videos: {','.join(VIDEO_FORMATS)})")
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
    """The job these arguments describe (:mod:`prelabel.batch.job`), with the models they name."""
    formats = [f.strip() for f in args.format.split(",") if f.strip()] if args.format else None
    options = JobOptions(
        source=args.source, out=args.out, labels=parse_labels(args.labels), formats=formats,
        with_masks=not args.no_masks, tile=args.tile, overlap=args.overlap, resume=args.resume, restart=args.restart,
        coco_segmentation=args.coco_segmentation, yolo_task=args.yolo_task,
        labelstudio_config=args.labelstudio_config.read_text(encoding="utf-8") if args.labelstudio_config else None,
        image_url_prefix=args.image_url_prefix, push=args.push, store_embeddings=args.store_embeddings,
        prefetch=args.prefetch, threads=args.threads, frames=args.frames, engine=args.engine,
        ray=RayResources(args.ray_address, args.ray_actors, args.ray_cpus_per_actor, args.ray_gpus_per_actor,
                         args.ray_local_cpus))
    settings = with_overrides(settings, **model_overrides(args, with_masks=not args.no_masks),
                              video_every=args.video_every)
    result = run_job(options, settings)
    if isinstance(result.written, list):  # videos: the files written
        for path in result.written:
            print(path)
    return result.exit_code
