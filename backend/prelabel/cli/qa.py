"""``prelabel qa``: automated checks of a COCO file or a Label Studio export, as JSON and HTML reports."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields
from pathlib import Path

from prelabel.cli.common import add_parser
from prelabel.core.errors import ExitCode
from prelabel.qa.checks import QaThresholds, check_items
from prelabel.qa.dataset import load_export
from prelabel.qa.report import html_report, report_document
from prelabel.settings import Settings

log = logging.getLogger("prelabel.qa")

THRESHOLD_HELP = {
    "min_side": "pixels: a box narrower than this is 'tiny'",
    "min_area": "square pixels: a box smaller than this is 'tiny'",
    "frame_tolerance": "pixels a shape may stick out of the image before it is 'out_of_frame'",
    "duplicate_iou": "box IoU at which two shapes of one label by one annotator are a 'duplicate' pair",
    "overlap_iou": "box IoU at which two shapes of different labels are a 'label_overlap' pair",
    "match_iou": "box IoU at which shapes of one label match (consensus, gold)",
    "min_consensus": "mean matched IoU between annotators below which an image is 'low_consensus'",
    "min_gold_f1": "F1 against the gold set below which an annotator's image is a 'gold_mismatch'",
}
PAIR_KINDS = ("duplicate", "label_overlap")


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    defaults = QaThresholds()
    parser = add_parser(sub, "qa")
    parser.add_argument("file", type=Path, help="COCO instances JSON or Label Studio JSON export")
    parser.add_argument("--gold", type=Path, help="gold set (COCO or Label Studio) to score against")
    parser.add_argument("--out", type=Path, help="report folder (default: FILE's folder); writes qa_report.json/.html")
    parser.add_argument("--images", type=Path, help="folder the images' file names are relative to (thumbnails)")
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=value, dest=name,
                            help=THRESHOLD_HELP[name])
    parser.set_defaults(func=run_qa)


def run_qa(args: argparse.Namespace, settings: Settings) -> int:
    """Run the checks; exit 3 when anything was flagged, so CI can gate on it."""
    thresholds = QaThresholds(**{f.name: getattr(args, f.name) for f in fields(QaThresholds)})
    kind, items = load_export(args.file)
    gold = load_export(args.gold)[1] if args.gold else None
    issues, consensus, gold_scores = check_items(items, thresholds, gold)
    document = report_document(str(args.file), kind, items, issues, consensus, gold_scores)
    out = args.out or args.file.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "qa_report.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out / "qa_report.html").write_text(html_report(document, items, issues, args.images), encoding="utf-8")
    summary = ", ".join(f"{k} {n}{' pairs' if k in PAIR_KINDS else ''}" for k, n in document["counts"].items()
                        if n) or "nothing flagged"
    log.info("%d images, %d shapes: %s; wrote %s", len(items), document["shapes"], summary, out / "qa_report.html")
    return ExitCode.SOME_FAILED if issues else ExitCode.OK
