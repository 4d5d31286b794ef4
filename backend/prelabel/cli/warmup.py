"""``prelabel warmup``: convert the configured models now, so that no job and no server start converts them."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from prelabel.cli.common import add_parser, labels_arg, model_args, model_overrides
from prelabel.core.errors import ExitCode
from prelabel.core.labels import LabelPrompt, parse_labels
from prelabel.pipeline import build_labeler
from prelabel.pipeline.warmup import COMMON_SIZES, image_sizes, warm_up
from prelabel.settings import Settings

log = logging.getLogger("prelabel")


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    warmup = add_parser(sub, "warmup")
    model_args(warmup, settings)
    labels_arg(warmup, settings)
    warmup.add_argument("--images", nargs="*", type=Path, default=[],
                        help="images or folders whose sizes the detector is converted for (default: a 4:3 photo "
                             "and a 16:9 video frame)")
    warmup.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    sizes = image_sizes(args.images) if args.images else list(COMMON_SIZES)
    labels = parse_labels(args.labels) if args.labels.strip() else [LabelPrompt("object", ("object",))]
    done = warm_up(build_labeler(settings, **model_overrides(args)), labels, sizes)
    for item in done:
        print(item.line(), file=sys.stderr if item.outcome == "failed" else sys.stdout)
    if not done:
        print("nothing to convert: the configured runtimes need no conversion (--sam-runtime / --detector-runtime "
              "openvino or auto on a CPU with OpenVINO do)")
    failed = sum(item.outcome == "failed" for item in done)
    if failed:
        log.error("%d conversion(s) failed: jobs run those models in PyTorch", failed)
        return ExitCode.SOME_FAILED
    return ExitCode.OK
