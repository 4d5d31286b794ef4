"""``prelabel demo``: a local Label Studio with the backend connected and a demo project pre-labeled."""

from __future__ import annotations

import argparse
from pathlib import Path

from prelabel.cli.common import add_parser
from prelabel.labelstudio.demo import run_demo
from prelabel.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    demo = add_parser(sub, "demo")
    demo.add_argument("--port", type=int, default=8080, help="Label Studio's port")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"), help="Label Studio data and logs")
    demo.add_argument("images", nargs="*", type=Path, help="images to import (default: bundled photos)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    run_demo(args.workdir, args.port, args.images or None)
    return 0
