"""``prelabel cvat spec``: write labels and prompts into a CVAT function's spec."""

from __future__ import annotations

import argparse

from prelabel.cli.common import add_parser
from prelabel.cvat.spec import run_spec, spec_arguments
from prelabel.settings import Settings


def register(sub: argparse._SubParsersAction, settings: Settings) -> None:
    cvat = add_parser(sub, "cvat")
    commands = cvat.add_subparsers(dest="cvat_command", required=True, metavar="COMMAND")
    spec = add_parser(commands, "spec", "generate metadata.annotations.spec of the CVAT detector function from a "
                                        "label list, printed or written into function.yaml files")
    spec_arguments(spec)
    spec.set_defaults(func=lambda args, _settings: run_spec(args))
