"""The ``prelabel`` command line: one module per command, each with ``register(sub, settings)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from prelabel import __version__
from prelabel.cli.common import COMMANDS, HelpFormatter, add_parser
from prelabel.core.errors import EXIT_CODES, ExitCode, PrelabelError
from prelabel.settings import Settings

log = logging.getLogger("prelabel")

def build_parser(settings: Settings, command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given the ``command`` about to run, only its module (and what that imports) is
    loaded, and the other commands are listed by name and help (:data:`~prelabel.cli.common.COMMANDS`)."""
    parser = argparse.ArgumentParser(prog="prelabel", description="Text-prompted pre-annotations (Grounding DINO, "
                                     "SAM, SAM 3, OWLv2, ...) for Label Studio, CVAT and files, on images and "
                                     "videos.", epilog=EXIT_CODES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"prelabel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command is None:
        modules = {c.module for c in COMMANDS.values()}
    else:
        modules = {COMMANDS[command].module} if command in COMMANDS else set()
    for name, entry in COMMANDS.items():
        if entry.module in modules:  # each module adds its command(s) and sets func(args, settings) -> exit code
            modules.discard(entry.module)
            importlib.import_module(f"prelabel.cli.{entry.module}").register(sub, settings)
        elif name not in sub.choices:
            add_parser(sub, name)
    return parser


def command_in(argv: Sequence[str]) -> str:
    """The command a command line names: its first word that is not an option (no global option takes a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prelabel`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        argv = sys.argv[1:] if argv is None else argv
        settings = Settings.load()
        args = build_parser(settings, command_in(argv)).parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        return int(args.func(args, settings) or 0)
    except PrelabelError as exc:  # user errors: one clear line, no traceback
        log.error("%s", exc)
        return exc.exit_code
    except OSError as exc:  # a file or folder that cannot be read or written
        log.error("%s", exc)
        return ExitCode.USAGE
    except KeyboardInterrupt:  # Ctrl-C: work already checkpointed stays; rerun the command to resume
        log.error("interrupted")
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
