"""``prelabel accept``: accept the predictions that meet a target precision, route the rest to humans."""

from __future__ import annotations

import argparse
import json

from prelabel.cli.common import add_parser
from prelabel.cli.feedback import DB_HELP, existing_store, label_studio
from prelabel.core.errors import PrelabelError
from prelabel.feedback.service import FeedbackService, FeedbackSettings
from prelabel.feedback.store import FeedbackStore
from prelabel.labelstudio.accept import accept_project, undo_project
from prelabel.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    accept = add_parser(sub, "accept")
    accept.add_argument("--project", type=int, required=True, help="Label Studio project id")
    accept.add_argument("--precision", type=float, default=settings.accept_precision or 0.95,
                        help="target precision of accepted regions (PRELABEL_ACCEPT_PRECISION)")
    accept.add_argument("--confidence-level", type=float, default=0.95,
                        help="of the Clopper-Pearson lower bound the held-out precision must meet")
    accept.add_argument("--db", default=settings.feedback_db, help=DB_HELP)
    accept.add_argument("--dry-run", action="store_true", help="report what would be accepted, change nothing")
    accept.add_argument("--undo", action="store_true", help="delete the machine-accepted annotations instead")
    accept.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    client = label_studio(settings)
    if args.undo:
        print(json.dumps({"project": args.project, "removed": undo_project(client, args.project)}))
        return 0
    if not 0 < args.precision < 1 or not 0 < args.confidence_level < 1:
        raise PrelabelError("--precision and --confidence-level must lie strictly between 0 and 1")
    service = FeedbackService(FeedbackStore(existing_store(args.db)), FeedbackSettings.from_settings(settings))
    project = str(args.project)
    cut = service.precision_cut(project, args.precision, args.confidence_level)
    learned = service.learned(project)
    result = accept_project(client, args.project, cut, learned.calibration if learned else None, args.dry_run)
    print(json.dumps(result, indent=2))
    return 0
