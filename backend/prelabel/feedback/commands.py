"""``prelabel fit``, ``prelabel report`` and ``prelabel rank``: active learning from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prelabel.ls_api import LabelStudioAPI
from prelabel.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    """Add the active-learning subcommands."""
    fit = sub.add_parser("fit", help="learn thresholds and calibration from a project's annotator feedback")
    fit.add_argument("--project", type=int, required=True, help="Label Studio project id")
    fit.add_argument("--label-config", type=Path,
                     help="the project's labeling config XML file (default: read from LABEL_STUDIO_URL)")
    fit.add_argument("--db", default=settings.feedback_db, help="feedback SQLite file (PRELABEL_FEEDBACK_DB)")
    fit.set_defaults(func=_fit)

    accept = sub.add_parser("accept", help="turn the predictions that meet a target precision into annotations")
    accept.add_argument("--project", type=int, required=True, help="Label Studio project id")
    accept.add_argument("--precision", type=float, default=settings.accept_precision or 0.95,
                        help="target precision of accepted regions (PRELABEL_ACCEPT_PRECISION, default 0.95)")
    accept.add_argument("--confidence-level", type=float, default=0.95,
                        help="of the Clopper-Pearson lower bound the held-out precision must meet")
    accept.add_argument("--db", default=settings.feedback_db, help="feedback SQLite file (PRELABEL_FEEDBACK_DB)")
    accept.add_argument("--dry-run", action="store_true", help="report what would be accepted, change nothing")
    accept.add_argument("--undo", action="store_true", help="delete the machine-accepted annotations instead")
    accept.set_defaults(func=_accept)

    report = sub.add_parser("report", help="acceptance, corrections and precision/recall per model version")
    report.add_argument("--project", type=int, required=True, help="Label Studio project id")
    report.add_argument("--db", default=settings.feedback_db, help="feedback SQLite file (PRELABEL_FEEDBACK_DB)")
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")
    report.set_defaults(func=_report)

    rank = sub.add_parser("rank", help="order tasks for review, least confident first")
    rank.add_argument("source", nargs="?", type=Path,
                      help="a Label Studio tasks JSON file or a folder of them (e.g. a batch output)")
    rank.add_argument("--project", type=int, help="rank a Label Studio project's tasks instead (LABEL_STUDIO_URL)")
    rank.add_argument("--views", action="store_true",
                      help="with --project: save Data Manager tabs 'most uncertain first' and 'needs review'")
    rank.add_argument("--diverse", type=float, metavar="SIM",
                      help="postpone tasks whose predictions look alike (cosine similarity > SIM, e.g. 0.9)")
    rank.add_argument("--review-threshold", type=float, default=settings.review_threshold)
    rank.add_argument("--top", type=int, default=20, help="rows to print")
    rank.add_argument("--out", type=Path, help="write the whole ranking as .csv or .json")
    rank.set_defaults(func=_rank)


def _api(settings: Settings) -> LabelStudioAPI:
    if not settings.label_studio_url or not settings.label_studio_api_key:
        raise ValueError("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to reach the Label Studio project")
    return LabelStudioAPI(settings.label_studio_url, settings.label_studio_api_key)


def _existing_store(path: str) -> str:
    if not Path(path).exists():
        raise ValueError(f"no feedback store at {path}; point --db (or PRELABEL_FEEDBACK_DB) at the server's")
    return path


def _fit(args: argparse.Namespace, settings: Settings) -> int:
    from prelabel.feedback.service import FeedbackService
    from prelabel.feedback.store import FeedbackStore
    from prelabel.formats.labelstudio import parse_label_config

    _existing_store(args.db)
    if args.label_config:
        label_config = args.label_config.read_text(encoding="utf-8")
    else:
        label_config = _api(settings).call("GET", f"/api/projects/{args.project}")["label_config"]
    prompts = parse_label_config(label_config, settings.prompt_map()).prompts
    service = FeedbackService(FeedbackStore(args.db), settings.feedback_settings())
    learned = service.fit(str(args.project), prompts, settings.box_threshold)
    print(json.dumps(learned.to_dict(), indent=2))
    return 0


def _accept(args: argparse.Namespace, settings: Settings) -> int:
    from prelabel.feedback.accept import accept_project, undo_project
    from prelabel.feedback.service import FeedbackService
    from prelabel.feedback.store import FeedbackStore

    api = _api(settings)
    if args.undo:
        print(json.dumps({"project": args.project, "removed": undo_project(api, args.project)}))
        return 0
    if not 0 < args.precision < 1 or not 0 < args.confidence_level < 1:
        raise ValueError("--precision and --confidence-level must be between 0 and 1")
    service = FeedbackService(FeedbackStore(_existing_store(args.db)), settings.feedback_settings())
    project = str(args.project)
    cut = service.precision_cut(project, args.precision, args.confidence_level)
    learned = service.learned(project)
    result = accept_project(api, args.project, cut, learned.calibration if learned else None, args.dry_run)
    print(json.dumps(result, indent=2))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from prelabel.feedback.report import format_report
    from prelabel.feedback.service import FeedbackService
    from prelabel.feedback.store import FeedbackStore

    report = FeedbackService(FeedbackStore(_existing_store(args.db))).report(str(args.project))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _rank(args: argparse.Namespace, settings: Settings) -> int:
    from prelabel.ranking import load_tasks, rank_tasks, save_review_views, write_ranking

    if (args.source is None) == (args.project is None):
        raise ValueError("rank takes either a tasks JSON file/folder or --project ID")
    if args.project is not None:
        api = _api(settings)
        tasks = api.tasks(args.project)
        if args.views:
            for title, view in save_review_views(api, args.project, args.review_threshold).items():
                print(f"Data Manager tab '{title}': {settings.label_studio_url}/projects/{args.project}/data?tab={view}")
    else:
        tasks = load_tasks(args.source)
    ranked = rank_tasks(tasks, args.review_threshold, args.diverse)
    flagged = sum(r.flagged for r in ranked)
    print(f"{len(ranked)} tasks, {flagged} below the review threshold {args.review_threshold:g}")
    print(f"{'rank':>5} {'task':>8} {'score':>7} {'regions':>8}  image")
    for r in ranked[: args.top]:
        score = "-" if r.score is None else f"{r.score:.3f}"
        print(f"{r.rank:>5} {r.task!s:>8} {score:>7} {r.regions:>8}  {'! ' if r.flagged else ''}{r.image}")
    if args.out:
        write_ranking(ranked, args.out)
        print(f"wrote {args.out}")
    return 0
