"""The ``prelabel`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from prelabel.settings import Settings

log = logging.getLogger("prelabel")

# Modules that add subcommands: each has ``register(sub, settings)`` which adds its parsers and sets ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "prelabel.batch.cli", "prelabel.eval_cli", "prelabel.qa.cli", "prelabel.feedback.commands",
    "prelabel.bench.command",
)


def model_args(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """The model choice options shared by every command that runs the models."""
    parser.add_argument("--detector", default=settings.detector, help="hub id, local folder, or random-tiny/random-full")
    parser.add_argument("--segmenter", default=settings.segmenter, help="hub id, local folder, sam_vit_*.pth, random-*")
    parser.add_argument("--device", default=settings.device, help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", default=settings.dtype, choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--sam-runtime", default=settings.sam_runtime, choices=["torch", "int8", "onnx"],
                        help="runtime of the segmenter's image encoder (int8 and onnx: CPU, fp32)")
    parser.add_argument("--box-threshold", type=float, default=settings.box_threshold)
    parser.add_argument("--text-threshold", type=float, default=settings.text_threshold)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prelabel", description="Grounding DINO + SAM pre-annotations.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    predict = sub.add_parser("predict", help="pre-label local images and write JSON (and overlays)")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--labels", default=settings.labels,
                         help="'rivet=oxidized rivet|rusted bolt,crack,eye@0.2' (name=prompts, @ per-label threshold)")
    model_args(predict, settings)
    predict.add_argument("--no-masks", action="store_true", help="boxes only, skip SAM")
    predict.add_argument("--include-masks", action="store_true", help="write masks as COCO RLE in the JSON")
    predict.add_argument("--out", type=Path, help="JSON output file (default: stdout)")
    predict.add_argument("--viz", type=Path, help="folder for overlay PNGs")
    predict.set_defaults(func=_predict)

    serve = sub.add_parser("serve", help="run the Label Studio ML backend")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9090)
    serve.add_argument("--workers", type=int, default=1, help="processes; each loads its own models")
    serve.add_argument("--threads", type=int, default=8)
    serve.add_argument("--config", type=Path, help="YAML/TOML settings file (also PRELABEL_CONFIG)")
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="local Label Studio + backend + a pre-labeled demo project")
    demo.add_argument("--port", type=int, default=8080, help="Label Studio's port")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"), help="Label Studio data and logs")
    demo.add_argument("images", nargs="*", type=Path, help="images to import (default: bundled photos)")
    demo.set_defaults(func=_demo)

    cvat = sub.add_parser("cvat", help="CVAT helpers: 'prelabel cvat spec --labels ...' writes a function spec",
                          add_help=False)
    cvat.add_argument("cvat_args", nargs=argparse.REMAINDER)
    cvat.set_defaults(func=_cvat)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub, settings)
    return parser


def _cvat(args: argparse.Namespace, settings: Settings) -> int:
    from prelabel.cvat.spec import cvat_spec_main

    if args.cvat_args[:1] != ["spec"]:
        raise ValueError("usage: prelabel cvat spec --labels 'name=prompt|prompt,...' [--out function.yaml]")
    return cvat_spec_main(args.cvat_args[1:])


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from prelabel.demo import run_demo

    run_demo(args.workdir, args.port, args.images or None)
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from prelabel.server.run import serve

    if args.config:
        settings = Settings.load(args.config)
    log.info("settings: %s", settings.redacted())
    serve(settings, args.host, args.port, args.workers, args.threads)
    return 0


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from prelabel.images import ImageError, load_image_file
    from prelabel.labels import parse_labels
    from prelabel.pipeline import Labeler
    from prelabel.viz import save_overlay

    labels = parse_labels(args.labels)
    config = replace(settings.labeler_config(), box_threshold=args.box_threshold, text_threshold=args.text_threshold)
    labeler = Labeler.from_specs(args.detector, None if args.no_masks else args.segmenter, args.device, args.dtype,
                                 config, settings.cache_mb, args.sam_runtime)
    if labeler.random_weights:
        log.warning("random-weight models in use: the regions are NOT real predictions (tests and benchmarks only)")
    if args.viz:
        args.viz.mkdir(parents=True, exist_ok=True)
    results, errors = [], []
    for path in tqdm(args.images, desc="pre-labeling", unit="img", disable=len(args.images) < 2, file=sys.stderr):
        try:
            image = load_image_file(path, settings.max_pixels)
        except ImageError as exc:
            errors.append({"path": str(path), "error": str(exc)})
            log.error("%s", exc)
            continue
        regions = labeler.predict(image, labels, with_masks=not args.no_masks)
        results.append({"path": str(path), **regions.to_dict(include_masks=args.include_masks)})
        if args.viz:
            save_overlay(str(args.viz / f"{path.stem}.png"), image, regions)
    document = {
        "model_version": labeler.model_version(labels),
        "random_weights": labeler.random_weights,
        "images": results,
        "errors": errors,
    }
    text = json.dumps(document, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
        log.info("wrote %d image(s) to %s", len(results), args.out)
    else:
        print(text)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prelabel`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.load()
        args = build_parser(settings).parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        return int(args.func(args, settings) or 0)
    except (ValueError, RuntimeError, OSError) as exc:  # user errors: one clear line, no traceback
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: work already checkpointed stays; rerun the command to resume
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
