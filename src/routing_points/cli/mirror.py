"""`mirror`: keep a local operation in sync with an upstream one, and serve it.

A command of its own rather than `serve --mirror`: it needs an upstream, a token and a
schedule that `serve` has no use for, it always runs one process (a sync loop per worker
would multiply the upstream's cost), and `--once` records a snapshot without serving.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from routing_points.cli.common import (
    database_option,
    open_store,
    settings_for,
    store_errors,
)
from routing_points.cli.consume import sdk_errors_naming
from routing_points.cli.help import WholeNumber, counted, example, http_url
from routing_points.cli.serve import host_option, port_option, ready_to_serve, run_server
from routing_points.client.base import check_token
from routing_points.client.errors import UsageError
from routing_points.mirror import Mirror, MirrorConfig, record_once
from routing_points.mirror.runner import RECORD_ATTEMPTS
from routing_points.mirror.sync import MirrorStore, UpstreamChanged
from routing_points.server.logformat import configure_logging
from routing_points.settings import Settings
from routing_points.sqlite_files import remove_sqlite_files
from routing_points.store import records


def _reason(exc: records.InvalidValue) -> str:
    """The store's reason without its field's name: the option is named instead."""
    return str(exc).removeprefix(f"{exc.field}: ")


def _nomenclature(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return records.nomenclature(value)
    except records.InvalidValue as exc:
        raise click.BadParameter(_reason(exc), param_hint=option) from None


def upstream_token(settings: Settings, token_file: Path | None) -> str:
    """From the file if given, else ROUTING_POINTS_UPSTREAM_TOKEN; never from argv."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise click.ClickException(
                f"cannot read the upstream token file {token_file}: {why}"
            ) from None
        if not token:
            raise click.UsageError(f"the upstream token file {token_file} is empty")
        return _checked(token, str(token_file))
    if settings.upstream_token is None or not settings.upstream_token.get_secret_value().strip():
        # A usage mistake, as `get` without a token is (exit 2).
        raise click.UsageError(
            "no upstream token: set ROUTING_POINTS_UPSTREAM_TOKEN or pass --upstream-token-file"
        )
    return _checked(
        settings.upstream_token.get_secret_value().strip(), "ROUTING_POINTS_UPSTREAM_TOKEN"
    )


def _checked(token: str, source: str) -> str:
    try:
        check_token(token)
    except UsageError as exc:
        raise click.UsageError(f"{source}: {exc}") from None
    return token


@click.command(
    epilog=example(
        "ROUTING_POINTS_UPSTREAM_TOKEN=... routing-points mirror --upstream-server 0032 "
        "--upstream-url https://wv0032.wolkvox.com --database sqlite:///mirror.db",
        "routing-points mirror --once --upstream-server 0032 --upstream-token-file token.txt "
        "--upstream-url http://127.0.0.1:8000 --database sqlite:///recording.db",
    )
)
@click.option(
    "--upstream-server", required=True, help="The upstream operation's nomenclature, e.g. 0032."
)
@click.option(
    "--upstream-url",
    default=None,
    callback=http_url("--upstream-url"),
    help="The upstream's base URL (default: the vendor's https://wv{server}.wolkvox.com).",
)
@click.option(
    "--upstream-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file holding the upstream token (default: env ROUTING_POINTS_UPSTREAM_TOKEN).",
)
@click.option(
    "--server",
    "local_server",
    default=None,
    help="The local operation holding the copy (default: the upstream's nomenclature).",
)
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds between syncs (raised to the upstream's X-Poll-Interval and budget share).",
)
@click.option(
    "--budget-share",
    type=click.FloatRange(0.001, 1),
    default=0.5,
    show_default=True,
    help="The most of the upstream's daily budget the mirror may spend.",
)
@click.option(
    "--max-backoff",
    type=click.FloatRange(min=1),
    default=3600,
    show_default=True,
    help="The longest wait between failed syncs, in seconds.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="Time zone of the local operation, if it has to be created: give the upstream "
    "operation's (last_use is copied in its local time; the local budget resets at this "
    "zone's midnight).",
)
@click.option(
    "--licenses",
    type=WholeNumber(min=1),
    default=1,
    show_default=True,
    help="Licenses of the local operation (its local consumers' budget), if created.",
)
@click.option("--once", is_flag=True, help="Record one snapshot into the store, then exit.")
@host_option
@port_option
@database_option
@click.option("--redis", "redis_url", metavar="URL", default=None, help="Keep the limits in Redis.")
@store_errors
@sdk_errors_naming("--upstream-url")
def mirror(
    upstream_server: str,
    upstream_url: str | None,
    upstream_token_file: Path | None,
    local_server: str | None,
    every: float,
    budget_share: float,
    max_backoff: float,
    timezone: str,
    licenses: int,
    once: bool,
    host: str,
    port: int,
    database_url: str | None,
    redis_url: str | None,
) -> None:
    """Mirror an upstream operation and serve it to local consumers (or record it once)."""
    overrides = {} if redis_url is None else {"redis_url": redis_url}
    settings = settings_for(database_url, **overrides)
    try:
        records.timezone(timezone)
    except records.InvalidValue as exc:
        raise click.BadParameter(_reason(exc), param_hint="--timezone") from None
    config = MirrorConfig(
        upstream_server=_nomenclature(upstream_server, "--upstream-server") or upstream_server,
        token=upstream_token(settings, upstream_token_file),
        base_url=upstream_url,
        local_server=_nomenclature(local_server, "--server"),
        every_s=every,
        budget_share=budget_share,
        max_backoff_s=max_backoff,
        timezone=timezone,
        licenses=licenses,
    )
    if once:
        # The one line of the outcome is the output; only trouble is logged.
        configure_logging("WARNING")
        _record(settings, config)
        return
    made = settings.is_sqlite and not settings.sqlite_path.exists()
    # What serve checks before anything is created, and the same server (its bounds too).
    ready_to_serve(settings, host, port)
    if not _has_copy(settings, config):
        # Nothing to serve until a first sync: it is made first, as --once makes it, so a
        # wrong token or upstream is one line (it served an empty copy, logging errors).
        _record(settings, config, made=made)
    run_server(settings, host, port, addon=Mirror(config))


def _has_copy(settings: Settings, config: MirrorConfig) -> bool:
    """Whether the store holds a copy of the upstream from an earlier sync."""
    if settings.is_sqlite and not settings.sqlite_path.exists():
        return False
    engine = open_store(settings.database_url, create=True)
    try:
        return MirrorStore(engine, config.server, config.identity).synced_at() is not None
    finally:
        engine.dispose()


def _record(settings: Settings, config: MirrorConfig, *, made: bool | None = None) -> None:
    # Like serve, the mirror makes its store; one it made for a recording that failed (a
    # wrong token, an unreachable upstream) is removed again: nothing half-written.
    if made is None:
        made = settings.is_sqlite and not settings.sqlite_path.exists()
    engine = open_store(settings.database_url, create=True)
    recorded = False
    try:
        store = MirrorStore(engine, config.server, config.identity)
        outcome = asyncio.run(record_once(config, store))
        recorded = True
    except UpstreamChanged as exc:
        raise click.ClickException(f"{exc}, {RECORD_ATTEMPTS} times: try again later") from None
    finally:
        engine.dispose()
        if made and not recorded:
            remove_sqlite_files(settings.sqlite_path)
    result = outcome.result
    if result is None:
        click.echo(f"operation {config.server} is unchanged since the last recording (304)")
    else:
        click.echo(
            f"recorded operation {config.upstream_server} of {config.url} as {config.server}: "
            f"{counted(result.total, 'routing point')} ({result.added} added, "
            f"{result.changed} changed, {result.deleted} deleted, "
            f"{counted(outcome.pages, 'page')})"
        )
    sys.stdout.flush()
