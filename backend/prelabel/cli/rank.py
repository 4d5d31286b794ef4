"""``prelabel rank``: order tasks for review, least confident first (and save Data Manager tabs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prelabel.cli.common import add_parser
from prelabel.cli.feedback import label_studio
from prelabel.core.errors import PrelabelError
from prelabel.labelstudio.ranking import load_tasks, rank_tasks, save_review_views, write_ranking
from prelabel.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    rank = add_parser(sub, "rank")
    rank.add_argument("source", nargs="?", type=Path,
                      help="a Label Studio tasks JSON file or a folder of them (e.g. a batch output)")
    rank.add_argument("--project", type=int, help="rank a Label Studio project's tasks instead (LABEL_STUDIO_URL)")
    rank.add_argument("--views", action="store_true",
                      help="with --project: save Data Manager tabs 'most uncertain first', 'needs review' and "
                           "'exploration candidates'")
    rank.add_argument("--diverse", type=float, metavar="SIM",
                      help="postpone tasks whose predictions look alike (cosine similarity > SIM, e.g. 0.9)")
    rank.add_argument("--review-threshold", type=float, default=settings.review_threshold,
                      help="tasks scoring below it are flagged (PRELABEL_REVIEW_THRESHOLD)")
    rank.add_argument("--top", type=int, default=20, help="rows to print")
    rank.add_argument("--out", type=Path, help="write the whole ranking as .csv or .json")
    rank.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if (args.source is None) == (args.project is None):
        raise PrelabelError("rank takes either a tasks JSON file/folder or --project ID")
    if args.project is not None:
        client = label_studio(settings)
        tasks = client.tasks(args.project)
        if args.views:
            for title, view in save_review_views(client, args.project, args.review_threshold).items():
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
