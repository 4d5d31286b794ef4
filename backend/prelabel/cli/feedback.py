"""``prelabel fit`` and ``prelabel report``: learning from a project's annotator feedback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prelabel.cli.common import add_parser
from prelabel.core.errors import PrelabelError
from prelabel.feedback.report import format_report
from prelabel.feedback.service import FeedbackService, FeedbackSettings
from prelabel.feedback.store import FeedbackStore, store_exists
from prelabel.labelstudio.client import LabelStudioClient
from prelabel.labelstudio.config import parse_label_config
from prelabel.settings import Settings

DB_HELP = "feedback store: a SQLite file, sqlite:///PATH or postgresql://USER:PASS@HOST/DB (PRELABEL_FEEDBACK_DB)"


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    fit = add_parser(sub, "fit")
    fit.add_argument("--project", type=int, required=True, help="Label Studio project id")
    fit.add_argument("--label-config", type=Path,
                     help="the project's labeling config XML file (default: read from LABEL_STUDIO_URL)")
    fit.add_argument("--db", default=settings.feedback_db, help=DB_HELP)
    fit.set_defaults(func=run_fit)

    report = add_parser(sub, "report")
    report.add_argument("--project", type=int, required=True, help="Label Studio project id")
    report.add_argument("--db", default=settings.feedback_db, help=DB_HELP)
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")
    report.set_defaults(func=run_report)


def label_studio(settings: Settings) -> LabelStudioClient:
    """The client of the configured Label Studio."""
    if not settings.label_studio_url or not settings.label_studio_api_key:
        raise PrelabelError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to reach the Label Studio project")
    return LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)


def existing_store(path: str) -> str:
    if not store_exists(path):
        raise PrelabelError(f"no feedback store at {path}; point --db (or PRELABEL_FEEDBACK_DB) at the server's")
    return path


def run_fit(args: argparse.Namespace, settings: Settings) -> int:
    existing_store(args.db)
    if args.label_config:
        label_config = args.label_config.read_text(encoding="utf-8")
    else:
        label_config = label_studio(settings).label_config(args.project)
    prompts = parse_label_config(label_config, settings.prompt_map()).prompts
    service = FeedbackService(FeedbackStore(args.db), FeedbackSettings.from_settings(settings))
    learned = service.fit(str(args.project), prompts, settings.box_threshold)
    print(json.dumps(learned.to_dict(), indent=2))
    return 0


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    report = FeedbackService(FeedbackStore(existing_store(args.db))).report(str(args.project))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
