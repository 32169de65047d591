"""Operator commands on the store: migrate, operations, tokens and routing points."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from routing_points.cli.common import database_option, open_store, settings_for, store_errors
from routing_points.server.render import LocalTimes, point_records
from routing_points.store import access, admin, audit
from routing_points.store import points as point_store
from routing_points.store.importer import read_records

YES_NO = click.Choice(["yes", "no"], case_sensitive=False)


def cli_audit(engine: Engine, action: str, server: str | None, detail: dict[str, object]) -> None:
    """Append a CLI change to the audit log, as the operating-system user who ran it."""
    audit.record(
        engine,
        actor=audit.cli_actor(),
        address="local",
        action=action,
        nomenclature=server,
        detail=detail,
        retention_days=settings_for(None).audit_retention_days,
    )


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
    open_store(database_url).dispose()
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
    engine = open_store(database_url)
    operation = admin.add_operation(engine, server, name, licenses, timezone)
    cli_audit(
        engine,
        "operation.create",
        operation.nomenclature,
        {"name": name, "licenses": licenses, "timezone": operation.timezone},
    )
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
@click.argument("server", required=False)
@click.option("--description", default="", help="What the token is for.")
@click.option("--daily-limit", type=int, default=None, help="Its own daily limit, if any.")
@click.option(
    "--scope",
    type=click.Choice(["read", "admin", "platform"]),
    default="read",
    show_default=True,
    help="platform: the console's every operation (no SERVER; never accepted by the API).",
)
@click.option(
    "--expires", default=None, help="When it stops working: 30d, 12h, 90m, 2w or YYYY-MM-DD."
)
@database_option
@store_errors
def tokens_add(
    server: str | None,
    description: str,
    daily_limit: int | None,
    scope: str,
    expires: str | None,
    database_url: str | None,
) -> None:
    """Create a token; its secret is printed alone on the last line, and never again."""
    expires_at = access.parse_expiry(expires) if expires is not None else None
    if scope == "platform":
        if server is not None or daily_limit is not None:
            raise click.UsageError("a platform token takes no SERVER and no --daily-limit")
        engine = open_store(database_url)
        token = access.add_platform_token(engine, description, expires_at)
        cli_audit(engine, "platform_token.create", None, {"platform_token_id": token.id})
        click.echo(f"platform token {token.id} created; its secret follows:")
        click.echo(token.secret)
        return
    if server is None:
        raise click.UsageError("give the SERVER of the operation the token belongs to")
    engine = open_store(database_url)
    token = admin.add_token(engine, server, description, daily_limit, scope, expires_at)
    cli_audit(
        engine,
        "token.create",
        server,
        {
            "token_id": token.id,
            "scope": scope,
            "daily_limit": daily_limit,
            "expires_at": expires_at,
        },
    )
    click.echo(f"token {token.id} created for operation {server}; its secret follows:")
    click.echo(token.secret)


@tokens.command("list")
@click.argument("server")
@database_option
@store_errors
def tokens_list(server: str, database_url: str | None) -> None:
    """List an operation's tokens (never their secrets)."""
    table = Table("id", "description", "daily limit", "scope", "created", "expires", "revoked")
    for token in access.token_views(open_store(database_url), server)[1]:
        table.add_row(
            str(token.id),
            token.description,
            "" if token.daily_limit is None else str(token.daily_limit),
            token.scope,
            _timestamp(token.created_at),
            _timestamp(token.expires_at),
            _timestamp(token.revoked_at),
        )
    _print_table(table)


@tokens.command("revoke")
@click.argument("token_id", type=int)
@database_option
@store_errors
def tokens_revoke(token_id: int, database_url: str | None) -> None:
    """Revoke a token: it is refused from the next request on."""
    engine = open_store(database_url)
    server = access.token_operation(engine, token_id)
    admin.revoke_token(engine, token_id)
    cli_audit(engine, "token.revoke", server, {"token_id": token_id})
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
    cli_audit(engine, "point.import", server, {"file": str(file), "upserted": result.upserted})
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
    engine = open_store(database_url)
    point_store.set_point(engine, server, rp_id, changes)
    cli_audit(engine, "point.update", server, {"rp_id": rp_id, "changes": changes})
    click.echo(f"routing point {rp_id} of operation {server} updated")
