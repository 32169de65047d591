"""Examples at the end of each command's --help (click's epilog) and option checks, with no
dependency but click and the client, so the client commands can use them without the
server's packages."""

from __future__ import annotations

from collections.abc import Callable

import click

from routing_points.client.base import check_url
from routing_points.client.errors import UsageError


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
