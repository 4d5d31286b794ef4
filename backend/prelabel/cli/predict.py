"""``prelabel predict``: pre-label local images into JSON (and overlay pictures)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from prelabel.cli.common import add_parser, labels_arg, model_args, model_overrides
from prelabel.core.errors import ExitCode, ModelLoadError, PrelabelError
from prelabel.core.images import ImageError, check_image_file, load_image_file
from prelabel.core.labels import parse_labels
from prelabel.core.viz import save_overlay
from prelabel.models.specs import check_spec, is_random, segments_itself
from prelabel.pipeline import build_labeler
from prelabel.settings import Settings

log = logging.getLogger("prelabel")


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    predict = add_parser(sub, "predict")
    predict.add_argument("images", nargs="+", type=Path, help="image files")
    labels_arg(predict, settings)
    model_args(predict, settings)
    predict.add_argument("--no-masks", action="store_true", help="boxes only, skip the segmenter")
    predict.add_argument("--include-masks", action="store_true", help="write masks as COCO RLE in the JSON")
    predict.add_argument("--out", type=Path, help="JSON output file (default: stdout)")
    predict.add_argument("--viz", type=Path, help="folder for overlay PNGs")
    predict.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    labels = parse_labels(args.labels)
    check_inputs(args, settings)
    labeler = build_labeler(settings, **model_overrides(args, with_masks=not args.no_masks))
    labeler.expect_images(len(args.images))  # a conversion that would not pay off for these images is not started
    if labeler.random_weights:
        log.warning("random-weight models in use: the regions are NOT real predictions (tests and benchmarks only)")
    if args.viz:
        args.viz.mkdir(parents=True, exist_ok=True)
    results, errors = [], []
    for path in tqdm(args.images, desc="pre-labeling", unit="img", disable=len(args.images) < 2, file=sys.stderr):
        try:
            image = load_image_file(path, settings.max_pixels)
        except ImageError as exc:  # its header was fine, its pixels are not (a truncated file)
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
    return ExitCode.SOME_FAILED if errors else ExitCode.OK


class InputErrors(PrelabelError):
    """Every problem with a command's inputs, found before any model loads; the last one is the message (the
    others are logged), and a usage error's exit code outranks an unavailable model's."""

    def __init__(self, problems: list[PrelabelError]) -> None:
        super().__init__(f"{problems[-1]} ({len(problems)} problem(s) with the inputs; no model was loaded)")
        self.exit_code = min(problem.exit_code for problem in problems)


def check_inputs(args: argparse.Namespace, settings: Settings) -> None:
    """Check every image (from its header) and model spec before loading models; report all problems at once."""
    problems: list[PrelabelError] = []
    for path in args.images:
        try:
            check_image_file(path, settings.max_pixels)
        except ImageError as exc:
            problems.append(exc)
    specs = {"detector": args.detector}
    if not args.no_masks and not segments_itself(args.detector):
        specs["segmenter"] = args.segmenter
    for kind, spec in specs.items():
        if spec and not is_random(spec):
            try:
                check_spec(kind, spec)
            except ModelLoadError as exc:
                problems.append(exc)
    if problems:
        for problem in problems[:-1]:
            log.error("%s", problem)
        raise InputErrors(problems)
