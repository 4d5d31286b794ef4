"""``prelabel qa``: automated checks of a COCO file or a Label Studio export, as JSON and HTML reports."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from prelabel.settings import Settings

log = logging.getLogger("prelabel.qa")


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    """Add ``prelabel qa``."""
    from prelabel.qa.checks import QaThresholds

    defaults = QaThresholds()
    parser = sub.add_parser("qa", help="check a COCO or Label Studio export: tiny/degenerate/out-of-frame shapes, "
                                       "duplicates, label overlaps, annotator consensus, gold-set scores")
    parser.add_argument("file", type=Path, help="COCO instances JSON or Label Studio JSON export")
    parser.add_argument("--gold", type=Path, help="gold set (COCO or Label Studio) to score against")
    parser.add_argument("--out", type=Path, help="report folder (default: FILE's folder); writes qa_report.json/.html")
    parser.add_argument("--images", type=Path, help="folder the images' file names are relative to (thumbnails)")
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=value, dest=name)
    parser.set_defaults(func=run_qa)


def run_qa(args: argparse.Namespace, settings: Settings) -> int:
    """Run the checks; exit 1 when anything was flagged, so CI can gate on it."""
    from dataclasses import fields

    from prelabel.qa.checks import QaThresholds, check_items
    from prelabel.qa.dataset import load_export
    from prelabel.qa.report import html_report, report_document

    thresholds = QaThresholds(**{f.name: getattr(args, f.name) for f in fields(QaThresholds)})
    kind, items = load_export(args.file)
    gold = load_export(args.gold)[1] if args.gold else None
    issues, consensus, gold_scores = check_items(items, thresholds, gold)
    document = report_document(str(args.file), kind, items, issues, consensus, gold_scores)
    out = args.out or args.file.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "qa_report.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out / "qa_report.html").write_text(html_report(document, items, issues, args.images), encoding="utf-8")
    summary = ", ".join(f"{k} {n}" for k, n in document["counts"].items() if n) or "nothing flagged"
    log.info("%d images, %d shapes: %s; wrote %s", len(items), document["shapes"], summary, out / "qa_report.html")
    return 1 if issues else 0
