"""Operator commands of the console's features: IP allow-lists, operation settings, token
expiry, platform tokens, and reading the audit log. Every change is itself audited."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import orjson
from rich.console import Console
from rich.table import Table

from routing_points.cli.admin import _timestamp, cli_audit, operations, tokens
from routing_points.cli.common import database_option, open_store, store_errors
from routing_points.store import access, audit


@click.group()
def allowlist() -> None:
    """The IP allow-list of an operation (10 entries per license; empty allows everyone)."""


@allowlist.command("list")
@click.argument("server")
@database_option
@store_errors
def allowlist_list(server: str, database_url: str | None) -> None:
    """Print the allowed networks, one a line."""
    _operation, entries = access.allowlist(open_store(database_url), server)
    for entry in entries:
        click.echo(entry)


@allowlist.command("add")
@click.argument("server")
@click.argument("network")
@database_option
@store_errors
def allowlist_add(server: str, network: str, database_url: str | None) -> None:
    """Allow an address or CIDR network (203.0.113.0/24) to call the API."""
    engine = open_store(database_url)
    entry = access.add_network(engine, server, network)
    cli_audit(engine, "allowlist.add", server, {"network": entry})
    click.echo(f"{entry} added to the allow-list of operation {server}")


@allowlist.command("remove")
@click.argument("server")
@click.argument("network")
@database_option
@store_errors
def allowlist_remove(server: str, network: str, database_url: str | None) -> None:
    """Remove an entry."""
    engine = open_store(database_url)
    entry = access.remove_network(engine, server, network)
    cli_audit(engine, "allowlist.remove", server, {"network": entry})
    click.echo(f"{entry} removed from the allow-list of operation {server}")


@operations.command("set")
@click.argument("server")
@click.option("--name", default=None)
@click.option("--licenses", type=int, default=None)
@click.option("--timezone", default=None, help="IANA time zone of its day.")
@database_option
@store_errors
def operations_set(
    server: str,
    name: str | None,
    licenses: int | None,
    timezone: str | None,
    database_url: str | None,
) -> None:
    """Change an operation's name, licenses or time zone."""
    engine = open_store(database_url)
    changed = access.set_operation(engine, server, name=name, licenses=licenses, timezone=timezone)
    detail = {"name": changed.name, "licenses": changed.licenses, "timezone": changed.timezone}
    cli_audit(engine, "operation.update", server, detail)
    click.echo(f"operation {server} updated")


@tokens.command("expire")
@click.argument("token_id", type=int)
@click.option("--expires", default=None, help="30d, 12h, 90m, 2w or YYYY-MM-DD.")
@click.option("--never", is_flag=True, help="Remove the expiry.")
@database_option
@store_errors
def tokens_expire(
    token_id: int, expires: str | None, never: bool, database_url: str | None
) -> None:
    """Set or remove a token's expiry; an expired token is refused like a revoked one."""
    if (expires is None) == (not never):
        raise click.UsageError("give either --expires WHEN or --never")
    expires_at = None if never or expires is None else access.parse_expiry(expires)
    engine = open_store(database_url)
    server = access.token_operation(engine, token_id)
    access.set_token_expiry(engine, token_id, expires_at)
    cli_audit(engine, "token.terms", server, {"token_id": token_id, "expires_at": expires_at})
    click.echo(f"token {token_id} expires {_timestamp(expires_at) or 'never'}")


@tokens.command("list-platform")
@database_option
@store_errors
def tokens_list_platform(database_url: str | None) -> None:
    """List the platform tokens (never their secrets)."""
    table = Table("id", "description", "created", "expires", "revoked")
    for token in access.list_platform_tokens(open_store(database_url)):
        table.add_row(
            str(token.id),
            token.description,
            _timestamp(token.created_at),
            _timestamp(token.expires_at),
            _timestamp(token.revoked_at),
        )
    Console(soft_wrap=True).print(table)


@tokens.command("revoke-platform")
@click.argument("token_id", type=int)
@database_option
@store_errors
def tokens_revoke_platform(token_id: int, database_url: str | None) -> None:
    """Revoke a platform token; its console sessions end at once."""
    engine = open_store(database_url)
    access.revoke_platform_token(engine, token_id)
    cli_audit(engine, "platform_token.revoke", None, {"platform_token_id": token_id})
    click.echo(f"platform token {token_id} revoked")


@click.command("audit")
@click.option("--server", default=None, help="One operation's entries (default: every entry).")
@click.option("--since", default=None, help="Entries from this UTC day on (YYYY-MM-DD).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@database_option
@store_errors
def audit_command(
    server: str | None, since: str | None, limit: int, fmt: str, database_url: str | None
) -> None:
    """Print the audit log, newest first."""
    since_at = None
    if since is not None:
        try:
            since_at = int(datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
        except ValueError:
            raise click.BadParameter("use the form YYYY-MM-DD", param_hint="--since") from None
    found = audit.entries(open_store(database_url), server, since=since_at, limit=limit)
    if fmt == "json":
        for entry in found:
            record = {
                "id": entry.id,
                "at": datetime.fromtimestamp(entry.at, UTC).isoformat().replace("+00:00", "Z"),
                "server": entry.nomenclature,
                "actor": entry.actor,
                "address": entry.address,
                "action": entry.action,
                "detail": orjson.loads(entry.detail or "{}"),
            }
            click.echo(orjson.dumps(record).decode())
        return
    table = Table("id", "when", "server", "who", "from", "action", "what")
    for entry in found:
        table.add_row(
            str(entry.id),
            _timestamp(entry.at),
            entry.nomenclature or "",
            entry.actor,
            entry.address,
            entry.action,
            entry.detail,
        )
    Console(soft_wrap=True).print(table)
