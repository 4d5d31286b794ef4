"""Options shared by the commands that run models."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from prelabel.core.errors import EXIT_CODES
from prelabel.settings import Settings


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: not for flags, options without one, or help that names its own."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == "" or \
                "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


@dataclass(frozen=True)
class Command:
    """A ``prelabel`` command: the module of ``prelabel.cli`` that registers it, and its one-line help."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "predict": Command("predict", "pre-label local images and write JSON (and overlays)"),
    "batch": Command("batch", "pre-label many images into COCO / Label Studio / YOLO files"),
    "serve": Command("serve", "run the Label Studio ML backend (models from PRELABEL_* settings)"),
    "connect": Command("connect", "connect a running `prelabel serve` to a Label Studio project"),
    "demo": Command("demo", "local Label Studio + backend + a pre-labeled demo project"),
    "cvat": Command("cvat", "CVAT helpers (the functions themselves live in cvat_serverless/)"),
    "qa": Command("qa", "check a COCO or Label Studio export: tiny/degenerate/out-of-frame shapes, duplicates, label "
                        "overlaps, annotator consensus, gold-set scores"),
    "eval": Command("eval", "COCO AP/AR (boxes and masks, per category) of predictions vs ground truth"),
    "fit": Command("feedback", "learn thresholds and calibration from a project's annotator feedback"),
    "report": Command("feedback", "acceptance, corrections and precision/recall per model version"),
    "accept": Command("accept", "turn the predictions that meet a target precision into annotations "
                                "(machine-accepted, reversible) and list the rest most uncertain first"),
    "rank": Command("rank", "order tasks for review, least confident first"),
    "bench": Command("bench", "benchmark prelabel vs a naive pipeline on random-full models"),
    "warmup": Command("warmup", "convert the configured models now (OpenVINO SAM encoder, Grounding DINO per image "
                                "shape), so that jobs and servers start with them converted"),
}
"""Every command, in the order ``prelabel --help`` lists them. Only the module of the command that runs is imported
(with the models, servers or SDKs it needs); the others are listed by name and help."""


def add_parser(sub: argparse._SubParsersAction, name: str, help: str | None = None,
               **kwargs: object) -> argparse.ArgumentParser:
    """A subcommand whose help shows every option's default and the exit codes (``help``: a top-level command's
    from :data:`COMMANDS`)."""
    help = help or COMMANDS[name].help
    return sub.add_parser(name, help=help, description=kwargs.pop("description", help),
                          formatter_class=HelpFormatter, epilog=kwargs.pop("epilog", EXIT_CODES), **kwargs)


def model_args(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """The model choice options (defaults from ``PRELABEL_*`` / the config file)."""
    parser.add_argument("--detector", default=settings.detector,
                        help="hub id, local folder written by save_pretrained (Grounding DINO, MM Grounding DINO, "
                             "OWLv2, SAM 3: its config.json decides), or a random-* spec (docs/models.md)")
    parser.add_argument("--segmenter", default=settings.segmenter,
                        help="hub id, local folder, official sam_vit_*.pth, or random-*")
    parser.add_argument("--device", default=settings.device, help="auto, cpu, cuda, cuda:1 or mps")
    parser.add_argument("--dtype", default=settings.dtype, choices=["auto", "fp32", "fp16", "bf16"],
                        help="model precision (auto: the fastest that met the accuracy bar on this device)")
    parser.add_argument("--sam-runtime", default=settings.sam_runtime,
                        choices=["auto", "torch", "int8", "onnx", "openvino"],
                        help="runtime of the segmenter's image encoder (int8, onnx, openvino: CPU; auto: the "
                             "fastest that met the accuracy bar here)")
    parser.add_argument("--sam-precision", default=settings.sam_precision, choices=["auto", "fp32", "bf16"],
                        help="SAM's precision with the OpenVINO encoder: the encoder's and the box decoder's "
                             "upscaling (auto: bf16 where the CPU has native bf16 and it met the accuracy bar; "
                             "--dtype sets the PyTorch models')")
    parser.add_argument("--detector-runtime", default=settings.detector_runtime, choices=["auto", "torch", "openvino"],
                        help="runtime of Grounding DINO (openvino: CPU, each image shape converted once it recurs, "
                             "PyTorch until then; auto: the fastest that met the accuracy bar here)")
    parser.add_argument("--box-threshold", type=float, default=settings.box_threshold,
                        help="detector score a box needs (per label: NAME@THRESHOLD in --labels)")
    parser.add_argument("--text-threshold", type=float, default=settings.text_threshold,
                        help="score a box's best matching prompt token needs (Grounding DINO, MM Grounding DINO)")


def labels_arg(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--labels", default=settings.labels,
                        help="'rivet=oxidized rivet|rusted bolt@0.3,crack,scratch@0.2': comma-separated labels; "
                             "=prompts (|-separated) and @threshold are optional (also PRELABEL_LABELS)")


def model_overrides(args: argparse.Namespace, with_masks: bool = True) -> dict[str, object]:
    """The model options as :func:`prelabel.pipeline.build_labeler` overrides."""
    return {"detector": args.detector, "segmenter": args.segmenter if with_masks else "", "device": args.device,
            "dtype": args.dtype, "sam_runtime": args.sam_runtime, "sam_precision": args.sam_precision,
            "detector_runtime": args.detector_runtime,
            "box_threshold": args.box_threshold,
            "text_threshold": args.text_threshold}
