"""Operator commands of the console's features: IP allow-lists and the audit log (token
expiry and platform tokens are `tokens` commands). Every change is itself audited."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import orjson

from routing_points.cli.common import (
    cli_audit,
    database_option,
    open_store,
    store_errors,
    timestamp_text,
)
from routing_points.cli.help import CommandGroup, DataTable, WholeNumber, example, print_table
from routing_points.store import access, audit, tenants


@click.group(cls=CommandGroup)
def allowlist() -> None:
    """The IP allow-list of an operation (10 entries per license; empty allows everyone)."""


@allowlist.command("list", epilog=example("routing-points allowlist list 0032"))
@click.argument("server")
@database_option
@store_errors
def allowlist_list(server: str, database_url: str | None) -> None:
    """Print the allowed networks, one a line (none: every address may call)."""
    _operation, entries = access.allowlist(open_store(database_url), server)
    if not entries:
        # On stderr: stdout stays the list, empty, for a script that reads it.
        click.echo(f"operation {server} has no allow-list: every address may call", err=True)
    for entry in entries:
        click.echo(entry)


@allowlist.command(
    "add",
    epilog=example(
        "routing-points allowlist add 0032 203.0.113.0/24",
        "routing-points allowlist add 0032 198.51.100.7",
    ),
)
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


@allowlist.command("remove", epilog=example("routing-points allowlist remove 0032 203.0.113.0/24"))
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


@click.command(
    "audit",
    epilog=example(
        "routing-points audit --server 0032",
        "routing-points audit --since 2026-11-01 --format json",
    ),
)
@click.option("--server", default=None, help="One operation's entries (default: every entry).")
@click.option("--since", default=None, help="Entries from this UTC day on (YYYY-MM-DD).")
@click.option("--limit", type=WholeNumber(1, 100_000), default=200, show_default=True)
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
    engine = open_store(database_url)
    if server is not None:
        tenants.get_operation(engine, server)  # an unknown one is named, not an empty log
    found = audit.entries(engine, server, since=since_at, limit=limit)
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
    table = DataTable("id", "when", "server", "who", "from", "action", "what")
    for entry in found:
        table.add_row(
            str(entry.id),
            timestamp_text(entry.at),
            entry.nomenclature or "",
            entry.actor,
            entry.address,
            entry.action,
            entry.readable_detail,
        )
    print_table(table)
