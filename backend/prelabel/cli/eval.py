"""``prelabel eval``: COCO AP/AR of a prediction file against ground truth, printed as a table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prelabel.cli.common import add_parser
from prelabel.core.errors import PrelabelError
from prelabel.qa.evaluation import evaluate, format_table
from prelabel.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    """Add ``prelabel eval``."""
    parser = add_parser(sub, "eval")
    parser.add_argument("--gt", type=Path, required=True, help="COCO instances ground truth")
    parser.add_argument("--pred", type=Path, required=True,
                        help="COCO results list, or a COCO document such as batch's coco.json (matched by file_name)")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    for path in (args.gt, args.pred):
        if not path.is_file():
            raise PrelabelError(f"{path} does not exist")
    report = evaluate(args.gt, args.pred)
    print(format_table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
