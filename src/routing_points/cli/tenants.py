"""Operator commands for the tenants: operations and their tokens (points: `cli.points`)."""

from __future__ import annotations

import re
from typing import Any

import click

from routing_points.cli.common import (
    cli_audit,
    database_option,
    iso_utc,
    json_option,
    open_store,
    print_json,
    settings_for,
    store_errors,
    timestamp_text,
)
from routing_points.cli.help import (
    STORED_ID,
    CommandGroup,
    DataTable,
    WholeNumber,
    example,
    print_table,
)
from routing_points.store import access, tenants


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


@click.group(cls=CommandGroup)
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
@click.option(
    "--licenses", required=True, type=WholeNumber(), help="Licenses (daily budget = x 1,000)."
)
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of its day.")
@database_option
@store_errors
def operations_add(
    server: str, name: str, licenses: int, timezone: str, database_url: str | None
) -> None:
    """Add an operation."""
    engine = open_store(database_url)
    operation = tenants.add_operation(engine, server, name, licenses, timezone)
    cli_audit(
        engine,
        "operation.create",
        operation.nomenclature,
        {"name": name, "licenses": licenses, "timezone": operation.timezone},
    )
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
@click.option(
    "--licenses", type=WholeNumber(), default=None, help="New licenses (daily budget x 1,000)."
)
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
    access.set_operation(engine, server, name=name, licenses=licenses, timezone=timezone)
    changes = {"name": name, "licenses": licenses, "timezone": timezone}
    cli_audit(
        engine, "operation.update", server, {k: v for k, v in changes.items() if v is not None}
    )
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
        for operation in tenants.list_operations(open_store(database_url))
    ]
    if as_json:
        print_json(rows)
        return
    table = DataTable("server", "name", "licenses", "daily budget", "timezone")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    print_table(table)


@click.group(cls=CommandGroup)
def tokens() -> None:
    """API tokens: shown once when created, stored only as a hash."""


@tokens.command(
    "add",
    epilog=example(
        'routing-points tokens add 0032 --description "BI pipeline"',
        "routing-points tokens add 0032 --scope admin --daily-limit 500",
        "routing-points tokens add 0032 --expires 30d",
        'routing-points tokens add --scope platform --description "platform team"',
    ),
)
@click.argument("server", required=False)
@click.option("--description", default="", help="What the token is for.")
@click.option(
    "--daily-limit", type=WholeNumber(), default=None, help="Its own daily limit, if any."
)
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
        platform = access.add_platform_token(engine, description, expires_at)
        cli_audit(engine, "platform_token.create", None, {"platform_token_id": platform.id})
        click.echo(f"platform token {platform.id} created; its secret follows:")
        click.echo(platform.secret)
        return
    if server is None:
        raise click.UsageError("give the SERVER of the operation the token belongs to")
    engine = open_store(database_url)
    token = tenants.add_token(engine, server, description, daily_limit, scope, expires_at)
    cli_audit(
        engine,
        "token.create",
        server,
        {
            "token_id": token.id,
            "description": description,
            "scope": scope,
            "daily_limit": daily_limit,
            "expires_at": expires_at,
        },
    )
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
    found = tenants.list_tokens(open_store(database_url), server)
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
                    "expires_at": iso_utc(token.expires_at),
                    "previous_secret_valid_until": iso_utc(token.previous_valid_until),
                }
                for token in found
            ]
        )
        return
    table = DataTable("id", "description", "daily limit", "scope", "created", "expires", "revoked")
    for token in found:
        table.add_row(
            str(token.id),
            token.description,
            "" if token.daily_limit is None else str(token.daily_limit),
            token.scope,
            timestamp_text(token.created_at),
            timestamp_text(token.expires_at),
            timestamp_text(token.revoked_at),
        )
    print_table(table)


@tokens.command("revoke", epilog=example("routing-points tokens revoke 7"))
@click.argument("token_id", type=STORED_ID)
@database_option
@store_errors
def tokens_revoke(token_id: int, database_url: str | None) -> None:
    """Revoke a token: it is refused from the next request on."""
    engine = open_store(database_url)
    server = access.token_operation(engine, token_id)
    tenants.revoke_token(engine, token_id)
    cli_audit(engine, "token.revoke", server, {"token_id": token_id})
    click.echo(f"token {token_id} revoked")


@tokens.command(
    "rotate",
    epilog=example(
        "routing-points tokens rotate 7              # the old secret works 1 more hour",
        "routing-points tokens rotate 7 --grace 0    # the old secret is refused at once",
    ),
)
@click.argument("token_id", type=STORED_ID)
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
    engine = open_store(database_url)
    token = tenants.rotate_token(engine, token_id, grace)
    server = access.token_operation(engine, token_id)
    cli_audit(engine, "token.rotate", server, {"token_id": token_id, "grace_s": grace})
    until = "is refused from now on" if grace == 0 else f"works for {grace} s more"
    click.echo(f"token {token_id} rotated: the old secret {until}; the new secret follows:")
    click.echo(token.secret)


@tokens.command(
    "expire",
    epilog=example(
        "routing-points tokens expire 7 --expires 30d",
        "routing-points tokens expire 7 --never",
    ),
)
@click.argument("token_id", type=STORED_ID)
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
    click.echo(f"token {token_id} expires {timestamp_text(expires_at) or 'never'}")


@tokens.command("list-platform", epilog=example("routing-points tokens list-platform"))
@database_option
@store_errors
def tokens_list_platform(database_url: str | None) -> None:
    """List the platform tokens (never their secrets)."""
    table = DataTable("id", "description", "created", "expires", "revoked")
    for token in access.list_platform_tokens(open_store(database_url)):
        table.add_row(
            str(token.id),
            token.description,
            timestamp_text(token.created_at),
            timestamp_text(token.expires_at),
            timestamp_text(token.revoked_at),
        )
    print_table(table)


@tokens.command("revoke-platform", epilog=example("routing-points tokens revoke-platform 2"))
@click.argument("token_id", type=STORED_ID)
@database_option
@store_errors
def tokens_revoke_platform(token_id: int, database_url: str | None) -> None:
    """Revoke a platform token; its console sessions end at once."""
    engine = open_store(database_url)
    access.revoke_platform_token(engine, token_id)
    cli_audit(engine, "platform_token.revoke", None, {"platform_token_id": token_id})
    click.echo(f"platform token {token_id} revoked")
