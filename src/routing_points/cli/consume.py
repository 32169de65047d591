"""`get` and `token-info`: the SDK from the shell, against this server or the vendor's.

Exit codes tell failures apart for scripts: 3 authentication, 4 quota or concurrency,
5 network or service unavailable, 1 anything else (2 is a usage error, from click).
"""

from __future__ import annotations

import csv
import functools
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import orjson
from click.core import ParameterSource
from rich.text import Text

from routing_points import contract
from routing_points.cli.help import DataTable, WholeNumber, example, http_url, print_table
from routing_points.client import Client, RetryPolicy, errors
from routing_points.client.base import check_token
from routing_points.client.models import FIELDS, RoutingPoint
from routing_points.store.records import MAX_RP_ID

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OTHER, EXIT_AUTH, EXIT_QUOTA, EXIT_NETWORK = 1, 3, 4, 5
TOKEN_INFO_FIELDS = contract.TOKEN_INFO_FIELDS


def exit_code(error: errors.RoutingPointsError) -> int:
    if isinstance(error, errors.MissingToken | errors.InvalidToken):
        return EXIT_AUTH
    if isinstance(error, errors.QuotaExceeded | errors.TooManySimultaneous):
        return EXIT_QUOTA
    if isinstance(error, errors.TransportError | errors.ServiceUnavailable):
        return EXIT_NETWORK
    return EXIT_OTHER


def sdk_errors_naming(url_option: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """One line on stderr, and an exit code that says what kind of failure it was; hints
    name the command's own option for the service's address."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except errors.RoutingPointsError as exc:
                click.echo(f"Error: {type(exc).__name__}: {_explained(exc, url_option)}", err=True)
                sys.exit(exit_code(exc))

        return wrapper

    return decorate


def _explained(exc: errors.RoutingPointsError, url_option: str) -> str:
    message = str(exc)
    if isinstance(exc, errors.QuotaExceeded) and exc.reset_at is not None:
        message += f" (the budget resets at {exc.reset_at:%Y-%m-%d %H:%M:%S %Z})"
    if isinstance(exc, errors.TransportError) and "WRONG_VERSION_NUMBER" in message:
        # TLS spoken to a port that answers in plain HTTP: the server runs, the scheme is off.
        message += f" (the server there speaks plain HTTP: give {url_option} with http://)"
    elif isinstance(exc, errors.TransportError):
        message += f" (is the server running there? {url_option} names it)"
    elif isinstance(exc, errors.InvalidToken):
        message += " (a token is valid for one operation: check it and the server)"
    elif isinstance(exc, errors.ContractError) and str(exc.code) == "404":
        message += (
            f" ({url_option} is where the API is served: the client adds "
            "/api/v2/information.php to it)"
        )
    return message


sdk_errors = sdk_errors_naming("--base-url")


def _required_token(ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    if not value:
        raise click.UsageError("no token: pass --token, or set ROUTING_POINTS_TOKEN")
    try:
        check_token(value.strip())
    except errors.UsageError as exc:
        from_environment = ctx.get_parameter_source("token") is ParameterSource.ENVIRONMENT
        source = "ROUTING_POINTS_TOKEN" if from_environment else "--token"
        raise click.UsageError(f"{source}: {exc}") from None
    return value


def connection_options(command: Callable[P, R]) -> Callable[P, R]:
    """--server, --token, --base-url, --retries: how to reach the service."""
    for option in reversed(
        [
            click.option("--server", required=True, help="Server nomenclature, e.g. 0032."),
            click.option(
                "--token",
                envvar="ROUTING_POINTS_TOKEN",
                callback=_required_token,
                help="The wolkvox-token (default: env ROUTING_POINTS_TOKEN).",
                show_envvar=True,
            ),
            click.option(
                "--base-url",
                default=None,
                callback=http_url("--base-url"),
                help="Default: the vendor's https://wv{server}.wolkvox.com.",
            ),
            click.option(
                "--retries",
                type=WholeNumber(0, 10),
                default=4,
                show_default=True,
                help="Retries on network errors, 5xx and concurrency refusals.",
            ),
        ]
    ):
        command = option(command)
    return command


format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)


def relative_age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("day", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            label = unit + ("s" if unit == "day" and count > 1 else "")
            return f"{count} {label} ago"
    return "just now"


def _yes_no(value: bool) -> Text:
    return Text("yes", style="green") if value else Text("no", style="red")


def _print_csv(fields: Iterable[str], records: Iterable[dict[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({key: record.get(key, "") for key in writer.fieldnames})


def _print_json(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def _zone(name: str | None) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(
            f"{name!r} is not a known IANA time zone", param_hint="--timezone"
        ) from None


@click.command(
    epilog=example(
        "export ROUTING_POINTS_TOKEN=...",
        "routing-points get --server 0032 --base-url http://127.0.0.1:8000",
        "routing-points get --server 0032 --routing 101 --format json   # the vendor's service",
    )
)
@connection_options
@format_option
@click.option("--routing", type=WholeNumber(0, MAX_RP_ID), default=None, help="Only this rp_id.")
@click.option(
    "--timezone",
    default=None,
    help="The operation's time zone, for the table's ages (default: this machine's).",
)
@sdk_errors
def get(
    server: str,
    token: str,
    base_url: str | None,
    retries: int,
    output_format: str,
    routing: int | None,
    timezone: str | None,
) -> None:
    """Print an operation's routing points (every page of them)."""
    zone = _zone(timezone)
    retry = RetryPolicy(max_retries=retries)
    with Client(server=server, token=token, base_url=base_url, retry=retry) as client:
        records = [r for page in client.iter_routing_points(routing) for r in page.records]
    if output_format == "json":
        _print_json(records)
    elif output_format == "csv":
        _print_csv(FIELDS, records)
    else:
        now = datetime.now(zone).replace(tzinfo=None)
        table = DataTable("rp_id", "rp_name", "ivr", "chat", "interaction", "crm", "last use")
        for point in (RoutingPoint.from_record(record) for record in records):
            table.add_row(
                str(point.rp_id),
                point.rp_name,
                _yes_no(point.ivr_active),
                _yes_no(point.chat_active),
                _yes_no(point.interaction_active),
                _yes_no(point.crm_active),
                relative_age(point.last_use, now),
            )
        print_table(table)
        if not records:  # not an error (exit 0), but an empty table alone says nothing
            which = "" if routing is None else f" with rp_id {routing}"
            click.echo(f"operation {server} has no routing point{which}", err=True)


@click.command(
    "token-info",
    epilog=example("routing-points token-info --server 0032 --base-url http://127.0.0.1:8000"),
)
@connection_options
@format_option
@sdk_errors
def token_info(
    server: str, token: str, base_url: str | None, retries: int, output_format: str
) -> None:
    """Print the token's counters for today (the service charges this call)."""
    retry = RetryPolicy(max_retries=retries)
    with Client(server=server, token=token, base_url=base_url, retry=retry) as client:
        info = client.token_info()
    record = {
        "description": info.description,
        "token_limit": str(info.token_limit),
        "token_use_today": str(info.token_use_today),
        "all_token_today": str(info.all_token_today),
        "available_consumption_options": str(info.available_consumption_options),
    }
    if output_format == "json":
        _print_json(record)
    elif output_format == "csv":
        _print_csv(TOKEN_INFO_FIELDS, [record])
    else:
        table = DataTable("field", "value")
        for field in TOKEN_INFO_FIELDS:
            table.add_row(field, record[field])
        print_table(table)
