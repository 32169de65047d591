"""Examples at the end of each command's --help (click's epilog) and option checks, with no
dependency but click and the client, so the client commands can use them without the
server's packages."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

import click
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.style import StyleType
from rich.table import Table
from rich.text import Text

from routing_points.client.base import check_url
from routing_points.client.errors import UsageError
from routing_points.store.records import MAX_RP_ID


class WholeNumber(click.IntRange):
    """click's IntRange, in words people use: "'abc' is not a valid whole number" (it said
    "integer range", and INTEGER RANGE in the help)."""

    name = "whole number"


# An id the store keeps (a token's, a routing point's): a BIGINT. Past it click says so in
# one line, where the store's driver would fail with a traceback.
STORED_ID = WholeNumber(1, MAX_RP_ID)


class CommandGroup(click.Group):
    """A group that answers a mistyped command with the nearest one it has."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            typed = args[0] if args else ""
            nearest = difflib.get_close_matches(typed, self.list_commands(ctx), n=1)
            if not nearest or typed.startswith("-"):
                raise
            raise click.UsageError(
                f"No such command {typed!r}. Did you mean {nearest[0]!r}?", ctx
            ) from None


def example(*lines: str) -> str:
    """A command's --help epilog: its examples, kept as written (click rewraps otherwise)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def http_url(option: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A callback for a base-URL option: without its scheme it is a usage mistake named as
    such (exit 2), not a network failure (exit 5) found after the command has started."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise click.UsageError(
                f"{option}: {value!r} must start with http:// or https:// "
                "(e.g. http://127.0.0.1:8000)"
            )
        try:
            check_url(value)
        except UsageError as exc:
            raise click.UsageError(f"{option}: {exc}") from None
        return value

    return check


# C0 and C1 controls, DEL, and the bidirectional marks and overrides: a value shown in a
# terminal must not clear the screen, set its title, or reorder the text around it.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: str) -> str:
    """`value` with its control characters written out as escapes (ESC as \\x1b)."""
    return _UNPRINTABLE.sub(lambda found: repr(found.group())[1:-1], value)


class DataTable(Table):
    """A table of stored or served values, shown as the text they are: never read as Rich
    markup (a name with "[/]" in it crashed the table, "[eu]" vanished from another), and
    with control characters escaped (a name could clear the reader's screen)."""

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: StyleType | None = None,
        end_section: bool = False,
    ) -> None:
        cells = (Text(printable(cell)) if isinstance(cell, str) else cell for cell in renderables)
        super().add_row(*cells, style=style, end_section=end_section)


def counted(count: int, noun: str) -> str:
    """ "1 routing point", "2 routing points": the count and its noun, agreeing."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def table_console(table: Table) -> Console:
    """A console for a table at its full width: the terminal's, or when the output goes to
    a pipe or a file, as wide as the table (rich's 80 columns cut every value short)."""
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        wide = Measurement.get(console, console.options.update_width(1_000_000), table)
        console = Console(soft_wrap=True, width=max(80, wide.maximum))
    return console


def print_table(table: Table) -> None:
    table_console(table).print(table)
