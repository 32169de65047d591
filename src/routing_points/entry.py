"""The `routing-points` command's entry point: Ctrl-C is one line and exit 130 from its
first instant. Loading the CLI takes most of a second (click, rich, SQLAlchemy, httpx);
a Ctrl-C then printed a traceback from inside some import."""

from __future__ import annotations

import signal
import sys
from typing import NoReturn


def interrupted() -> NoReturn:
    sys.stderr.write("interrupted\n")
    sys.exit(128 + signal.SIGINT)


def main() -> None:
    try:
        from routing_points.cli import main as cli
    except KeyboardInterrupt:
        interrupted()
    cli()
