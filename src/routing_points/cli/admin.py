"""Operator commands on the store: migrate, operations and tokens (points: `cli.points`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from routing_points.cli.common import (
    database_option,
    iso_utc,
    json_option,
    open_store,
    print_json,
    settings_for,
    store_errors,
)
from routing_points.cli.help import example
from routing_points.store import admin


def print_table(table: Table) -> None:
    Console(soft_wrap=True).print(table)


def _timestamp(epoch: int | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Duration(click.ParamType[int]):
    """`90s`, `30m`, `1h`, `2d` or a bare number of seconds (`0` included)."""

    name = "duration"
    _UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration such as 0, 90s, 30m, 1h or 2d", param, ctx)
        return int(match[1]) * self._UNITS[match[2]]


@click.command(epilog=example("routing-points migrate --database sqlite:///routing-points.db"))
@database_option
@store_errors
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema."""
    open_store(database_url, create=True).dispose()
    click.echo("the database schema is up to date")


@click.group()
def operations() -> None:
    """Operations (tenants), named by their four-digit server nomenclature."""


@operations.command(
    "add",
    epilog=example(
        'routing-points operations add 0032 --name "Acme" --licenses 3 --timezone America/Bogota'
    ),
)
@click.argument("server")
@click.option("--name", required=True, help="The operation's name.")
@click.option("--licenses", required=True, type=int, help="Licenses (daily budget = x 1,000).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of its day.")
@database_option
@store_errors
def operations_add(
    server: str, name: str, licenses: int, timezone: str, database_url: str | None
) -> None:
    """Add an operation."""
    operation = admin.add_operation(open_store(database_url), server, name, licenses, timezone)
    click.echo(f"operation {operation.nomenclature} added ({operation.name})")


@operations.command(
    "set",
    epilog=example(
        "routing-points operations set 0032 --licenses 5",
        'routing-points operations set 0032 --name "Acme Ltd" --timezone America/Lima',
    ),
)
@click.argument("server")
@click.option("--name", default=None, help="A new name.")
@click.option("--licenses", type=int, default=None, help="New licenses (daily budget x 1,000).")
@click.option("--timezone", default=None, help="A new IANA time zone (its day and last_use).")
@database_option
@store_errors
def operations_set(
    server: str,
    name: str | None,
    licenses: int | None,
    timezone: str | None,
    database_url: str | None,
) -> None:
    """Change an operation's name, licenses or time zone; servers follow at once."""
    engine = open_store(database_url)
    admin.set_operation(engine, server, name=name, licenses=licenses, timezone=timezone)
    click.echo(f"operation {server} updated")


@operations.command(
    "list",
    epilog=example("routing-points operations list", "routing-points operations list --json"),
)
@json_option
@database_option
@store_errors
def operations_list(as_json: bool, database_url: str | None) -> None:
    """List the operations and their daily budgets."""
    settings = settings_for(database_url)
    rows = [
        {
            "server": operation.nomenclature,
            "name": operation.name,
            "licenses": operation.licenses,
            "daily_budget": operation.licenses * settings.daily_calls_per_license,
            "timezone": operation.timezone,
        }
        for operation in admin.list_operations(open_store(database_url))
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("server", "name", "licenses", "daily budget", "timezone")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    print_table(table)


@click.group()
def tokens() -> None:
    """API tokens: shown once when created, stored only as a hash."""


@tokens.command(
    "add",
    epilog=example(
        'routing-points tokens add 0032 --description "BI pipeline"',
        "routing-points tokens add 0032 --scope admin --daily-limit 500",
    ),
)
@click.argument("server")
@click.option("--description", default="", help="What the token is for.")
@click.option("--daily-limit", type=int, default=None, help="Its own daily limit, if any.")
@click.option("--scope", type=click.Choice(["read", "admin"]), default="read", show_default=True)
@database_option
@store_errors
def tokens_add(
    server: str, description: str, daily_limit: int | None, scope: str, database_url: str | None
) -> None:
    """Create a token; its secret is printed alone on the last line, and never again."""
    token = admin.add_token(open_store(database_url), server, description, daily_limit, scope)
    click.echo(f"token {token.id} created for operation {server}; its secret follows:")
    click.echo(token.secret)


@tokens.command(
    "list",
    epilog=example("routing-points tokens list 0032", "routing-points tokens list 0032 --json"),
)
@click.argument("server")
@json_option
@database_option
@store_errors
def tokens_list(server: str, as_json: bool, database_url: str | None) -> None:
    """List an operation's tokens (never their secrets)."""
    found = admin.list_tokens(open_store(database_url), server)
    if as_json:
        print_json(
            [
                {
                    "id": token.id,
                    "server": token.nomenclature,
                    "description": token.description,
                    "daily_limit": token.daily_limit,
                    "scope": token.scope,
                    "created_at": iso_utc(token.created_at),
                    "revoked_at": iso_utc(token.revoked_at),
                    "previous_secret_valid_until": iso_utc(token.previous_valid_until),
                }
                for token in found
            ]
        )
        return
    table = Table("id", "description", "daily limit", "scope", "created", "revoked")
    for token in found:
        table.add_row(
            str(token.id),
            token.description,
            "" if token.daily_limit is None else str(token.daily_limit),
            token.scope,
            _timestamp(token.created_at),
            _timestamp(token.revoked_at),
        )
    print_table(table)


@tokens.command("revoke", epilog=example("routing-points tokens revoke 7"))
@click.argument("token_id", type=int)
@database_option
@store_errors
def tokens_revoke(token_id: int, database_url: str | None) -> None:
    """Revoke a token: it is refused from the next request on."""
    admin.revoke_token(open_store(database_url), token_id)
    click.echo(f"token {token_id} revoked")


@tokens.command(
    "rotate",
    epilog=example(
        "routing-points tokens rotate 7              # the old secret works 1 more hour",
        "routing-points tokens rotate 7 --grace 0    # the old secret is refused at once",
    ),
)
@click.argument("token_id", type=int)
@click.option(
    "--grace",
    type=Duration(),
    default="1h",
    show_default=True,
    help="How long the old secret keeps working (0, 90s, 30m, 1h, 2d).",
)
@database_option
@store_errors
def tokens_rotate(token_id: int, grace: int, database_url: str | None) -> None:
    """Give a token a new secret, printed alone on the last line, and never again.

    The token keeps its id, limits and today's counters. The old secret keeps working
    for the grace period, so clients can switch without a gap; rotating again ends the
    grace of the secret before.
    """
    token = admin.rotate_token(open_store(database_url), token_id, grace)
    until = "is refused from now on" if grace == 0 else f"works for {grace} s more"
    click.echo(f"token {token_id} rotated: the old secret {until}; the new secret follows:")
    click.echo(token.secret)
