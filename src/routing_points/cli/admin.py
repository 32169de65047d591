"""Operator commands on the store: migrate, operations, tokens and routing points."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table

from routing_points.cli.common import database_option, open_store, settings_for, store_errors
from routing_points.server.render import LocalTimes, point_records
from routing_points.store import admin
from routing_points.store import points as point_store
from routing_points.store.importer import read_records

YES_NO = click.Choice(["yes", "no"], case_sensitive=False)


def _print_table(table: Table) -> None:
    Console(soft_wrap=True).print(table)


def _timestamp(epoch: int | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command()
@database_option
@store_errors
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema."""
    open_store(database_url, create=True).dispose()
    click.echo("the database schema is up to date")


@click.group()
def operations() -> None:
    """Operations (tenants), named by their four-digit server nomenclature."""


@operations.command("add")
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


@operations.command("list")
@database_option
@store_errors
def operations_list(database_url: str | None) -> None:
    """List the operations and their daily budgets."""
    settings = settings_for(database_url)
    table = Table("server", "name", "licenses", "daily budget", "timezone")
    for operation in admin.list_operations(open_store(database_url)):
        budget = operation.licenses * settings.daily_calls_per_license
        table.add_row(
            operation.nomenclature,
            operation.name,
            str(operation.licenses),
            str(budget),
            operation.timezone,
        )
    _print_table(table)


@click.group()
def tokens() -> None:
    """API tokens: shown once when created, stored only as a hash."""


@tokens.command("add")
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


@tokens.command("list")
@click.argument("server")
@database_option
@store_errors
def tokens_list(server: str, database_url: str | None) -> None:
    """List an operation's tokens (never their secrets)."""
    table = Table("id", "description", "daily limit", "scope", "created", "revoked")
    for token in admin.list_tokens(open_store(database_url), server):
        table.add_row(
            str(token.id),
            token.description,
            "" if token.daily_limit is None else str(token.daily_limit),
            token.scope,
            _timestamp(token.created_at),
            _timestamp(token.revoked_at),
        )
    _print_table(table)


@tokens.command("revoke")
@click.argument("token_id", type=int)
@database_option
@store_errors
def tokens_revoke(token_id: int, database_url: str | None) -> None:
    """Revoke a token: it is refused from the next request on."""
    admin.revoke_token(open_store(database_url), token_id)
    click.echo(f"token {token_id} revoked")


@click.group()
def points() -> None:
    """Routing points of an operation."""


@points.command("import")
@click.argument("server")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@database_option
@store_errors
def points_import(server: str, file: Path, database_url: str | None) -> None:
    """Upsert routing points by rp_id from a CSV or JSON file: all of them, or none."""
    engine = open_store(database_url)
    admin.get_operation(engine, server)
    records = read_records(file)
    result = point_store.upsert_points(engine, server, records, describe=f"{file}: record")
    click.echo(f"{result.upserted} routing points imported into operation {server}")


@points.command("list")
@click.argument("server")
@database_option
@store_errors
def points_list(server: str, database_url: str | None) -> None:
    """List an operation's routing points."""
    operation, rows = point_store.list_points(open_store(database_url), server)
    local_time = LocalTimes(ZoneInfo(operation.timezone))
    table = Table("rp_id", "rp_name", "ivr", "chat", "interaction", "crm", "last_use")
    for record in point_records([point_store.contract_row(row) for row in rows], local_time):
        table.add_row(*record.values())
    _print_table(table)


@points.command("set")
@click.argument("server")
@click.argument("rp_id", type=int)
@click.option("--ivr", type=YES_NO)
@click.option("--chat", type=YES_NO)
@click.option("--interaction", type=YES_NO)
@click.option("--crm", type=YES_NO)
@click.option("--name", help="A new rp_name.")
@database_option
@store_errors
def points_set(
    server: str,
    rp_id: int,
    ivr: str | None,
    chat: str | None,
    interaction: str | None,
    crm: str | None,
    name: str | None,
    database_url: str | None,
) -> None:
    """Change one routing point's flags or name."""
    given = {
        "ivr_active": ivr,
        "chat_active": chat,
        "interaction_active": interaction,
        "crm_active": crm,
        "rp_name": name,
    }
    changes = {field: value for field, value in given.items() if value is not None}
    point_store.set_point(open_store(database_url), server, rp_id, changes)
    click.echo(f"routing point {rp_id} of operation {server} updated")
