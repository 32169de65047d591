"""`routing-points`: serve the API, administer its store, and consume it.

Every failure is one clear line on stderr and a non-zero exit; admin commands never
leave a half-written store behind.
"""

from __future__ import annotations

import click

from routing_points import __version__
from routing_points.cli.access import allowlist, audit_command
from routing_points.cli.admin import migrate, operations, points, tokens
from routing_points.cli.consume import get, token_info
from routing_points.cli.serve import demo, serve
from routing_points.cli.watch import history_command, watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="routing-points")
def main() -> None:
    """A self-hostable Wolkvox routing_points API, and the client to consume it."""


for command in (
    serve,
    demo,
    migrate,
    operations,
    tokens,
    points,
    allowlist,
    audit_command,
    get,
    token_info,
    watch,
    history_command,
):
    main.add_command(command)
