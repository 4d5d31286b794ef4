"""The ``prelabel`` command line: one module per command, each with ``register(sub, settings)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from prelabel import __version__
from prelabel.cli.common import HelpFormatter
from prelabel.core.errors import EXIT_CODES, ExitCode, PrelabelError
from prelabel.settings import Settings

log = logging.getLogger("prelabel")

# Each module adds its subcommand(s) and sets ``func(args, settings) -> exit code``.
COMMANDS: tuple[str, ...] = (
    "predict", "batch", "serve", "connect", "demo", "cvat", "qa", "eval", "feedback", "accept", "rank", "bench",
    "warmup",
)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prelabel", description="Text-prompted pre-annotations (Grounding DINO, "
                                     "SAM, SAM 3, OWLv2, ...) for Label Studio, CVAT and files, on images and "
                                     "videos.", epilog=EXIT_CODES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"prelabel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"prelabel.cli.{name}").register(sub, settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prelabel`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.load()
        args = build_parser(settings).parse_args(argv)
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
