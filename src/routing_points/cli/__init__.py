"""`routing-points`: serve the API, administer its store, and consume it.

Every failure is one clear line on stderr and a non-zero exit; admin commands never
leave a half-written store behind.
"""

from __future__ import annotations

from typing import Any

import click

from routing_points import __version__
from routing_points.cli.admin import migrate, operations, tokens
from routing_points.cli.consume import get, token_info
from routing_points.cli.mirror import mirror
from routing_points.cli.points import points
from routing_points.cli.serve import demo, serve
from routing_points.cli.watch import history_command, watch


class UsageMistake(click.ClickException):
    """A usage error as one line (click's own adds the usage and a hint: three lines)."""

    exit_code = 2


class Commands(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise UsageMistake(f"{exc.format_message()} (see: {path} --help)") from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    get,
    token_info,
    watch,
    history_command,
    mirror,
):
    main.add_command(command)
