"""`watch` and `history`: track an operation over time, then read what happened.

`watch --once` is for cron: exit 0 when nothing changed, 1 when something did, and the
`get` codes for failures (3 authentication, 4 quota, 5 network), 6 for any other error.
Stopped by Ctrl-C or SIGTERM: 0 between polls, 130 / 143 when a poll was cut short. Logs go
to stderr at WARNING and above unless `-v` (INFO) or `-vv` (DEBUG, HTTP requests included),
so a quiet cron job mails nothing.
"""

from __future__ import annotations

import csv
import logging
import signal
import sys
from datetime import datetime, timedelta
from types import FrameType
from zoneinfo import ZoneInfo

import click
import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from routing_points.cli.consume import EXIT_OTHER, connection_options, exit_code
from routing_points.cli.help import (
    STORED_ID,
    DataTable,
    WholeNumber,
    example,
    http_url,
    table_console,
)
from routing_points.client import Client, RetryPolicy, RoutingPointsError
from routing_points.sqlite_files import remove_sqlite_files
from routing_points.watch.diff import FLAGS
from routing_points.watch.exporter import WatchMetrics
from routing_points.watch.history import History, history_file, history_url
from routing_points.watch.watcher import IntervalPolicy, PollInterrupted, StopRequest, Watcher
from routing_points.watch.webhook import WebhookSender

DEFAULT_HISTORY = "routing-points-history.db"
EXIT_CHANGED, EXIT_WATCH_OTHER = 1, 6
EVENT_FIELDS = ("id", "at", "server", "kind", "rp_id", "rp_name", "field", "old", "new")


def configure_watch_logging(verbosity: int) -> None:
    """WARNING and above by default; httpx's per-request INFO lines only at -vv."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)


def open_history(location: str) -> History:
    """The history store, or one line saying why not (a folder that does not exist is not
    created: a typo would leave a store where nobody looks for it)."""
    url = history_url(location)
    file = history_file(location)
    if file is not None and not file.parent.is_dir():
        raise click.ClickException(
            f"cannot keep the history in {location}: the folder {file.parent} does not exist"
        )
    try:
        return History(location)
    except (SQLAlchemyError, ImportError, OSError, ValueError) as exc:
        original = getattr(exc, "orig", None) or exc
        reason = str(original).strip().splitlines()[0] if str(original).strip() else ""
        shown = make_url(url).render_as_string(hide_password=True) if "://" in url else location
        raise click.ClickException(
            f"cannot use the history {shown}: {reason or type(original).__name__}"
        ) from None


def _zone(name: str | None) -> ZoneInfo | None:
    try:
        return None if name is None else ZoneInfo(name)
    except (KeyError, ValueError):
        raise click.BadParameter(
            f"{name!r} is not a known IANA time zone", param_hint="--timezone"
        ) from None


@click.command(
    epilog=example(
        "routing-points watch --server 0032 --base-url http://127.0.0.1:8000 --once",
        "routing-points watch --server 0032 --metrics-port 9477 --webhook https://hooks.example/rp",
    )
)
@connection_options
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds between polls (raised to what the service and budget allow).",
)
@click.option(
    "--history",
    "history_path",
    default=DEFAULT_HISTORY,
    show_default=True,
    help="SQLite file or SQLAlchemy URL keeping snapshots and events.",
)
@click.option(
    "--metrics-port",
    type=WholeNumber(1, 65535),
    default=None,
    help="Serve Prometheus metrics here.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option(
    "--metrics-per-point",
    is_flag=True,
    help="Also export one series per routing point and flag (large for big operations).",
)
@click.option(
    "--webhook",
    default=None,
    callback=http_url("--webhook"),
    help="POST change events here, in order.",
)
@click.option("--once", is_flag=True, help="Poll once (for cron): exit 1 if anything changed.")
@click.option(
    "--stale-after",
    type=click.FloatRange(min=1),
    default=7 * 86_400,
    show_default=True,
    help="Seconds without use before a point is reported stale.",
)
@click.option(
    "--budget-share",
    type=click.FloatRange(0.001, 1),
    default=0.10,
    show_default=True,
    help="The most of the daily budget the watcher's own polls may spend.",
)
@click.option(
    "--timezone",
    default=None,
    help="The operation's time zone, for ages and staleness (default: this machine's).",
)
@click.option("-v", "--verbose", count=True, help="Log each poll (-v), and each request (-vv).")
def watch(
    server: str,
    token: str,
    base_url: str | None,
    retries: int,
    every: float,
    history_path: str,
    metrics_port: int | None,
    metrics_host: str,
    metrics_per_point: bool,
    webhook: str | None,
    once: bool,
    stale_after: float,
    budget_share: float,
    timezone: str | None,
    verbose: int,
) -> None:
    """Poll an operation, keep its history, print each change as one JSON line."""
    configure_watch_logging(verbose)
    zone = _zone(timezone)
    metrics = None
    try:
        if metrics_port is not None:  # before the history: nothing is created if it fails
            metrics = WatchMetrics(server, per_point=metrics_per_point)
            try:
                metrics.serve(metrics_port, metrics_host)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: "
                    f"{exc.strerror or exc} (choose another with --metrics-port)"
                ) from None
        file = history_file(history_path)
        made = file if file is not None and not file.exists() else None
        history = open_history(history_path)
    except click.ClickException as exc:
        # Exit 6, not click's 1: 1 says "changed" to a cron job.
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(EXIT_WATCH_OTHER)
    sender = WebhookSender(webhook, history) if webhook else None
    client = Client(
        server=server, token=token, base_url=base_url, retry=RetryPolicy(max_retries=retries)
    )
    watcher = Watcher(
        client,
        history,
        IntervalPolicy(every, budget_share),
        stale_after=timedelta(seconds=stale_after),
        timezone=zone,
        out=sys.stdout,
        metrics=metrics,
        webhook=sender,
        explain_interval=not once,
    )
    stop = StopRequest()  # not a threading.Event: see StopRequest
    received: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()
        watcher.interrupt()  # raises PollInterrupted while a poll is still reading

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        if once:
            try:
                result = watcher.poll()
            except RoutingPointsError as exc:
                click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
                if made is not None:  # a history it made for a poll that failed: gone again
                    history.close()
                    remove_sqlite_files(made)
                code = exit_code(exc)
                sys.exit(EXIT_WATCH_OTHER if code == EXIT_OTHER else code)
            watcher.deliver()
            sys.exit(EXIT_CHANGED if result.events else 0)
        watcher.run(stop)
    except PollInterrupted:
        click.echo("stopped during a poll: nothing of it was recorded", err=True)
        sys.exit(128 + (received[-1] if received else signal.SIGINT))
    finally:
        stop.close()
        client.close()
        if sender is not None:
            sender.close()
        history.close()


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)", param_hint="--since"
        ) from None
    return moment.timestamp()


def _flag_lines(history: History, server: str | None, rp_id: int, since: float | None) -> list[str]:
    """One sparkline per flag across the snapshots: █ on, ▁ off, · absent."""
    snapshots = history.snapshots_of(server, since)
    lines = []
    for flag in FLAGS:
        marks = []
        for snapshot in snapshots:
            point = snapshot.points().get(rp_id)
            marks.append("·" if point is None else "█" if getattr(point, flag) else "▁")
        lines.append(f"{flag:<19} {''.join(marks)}")
    return lines


@click.command(
    "history",
    epilog=example(
        "routing-points history --server 0032 --since 2026-11-01",
        "routing-points history --rp 101 --format json",
    ),
)
@click.option("--history", "history_path", default=DEFAULT_HISTORY, show_default=True)
@click.option("--server", default=None, help="Only this operation.")
@click.option("--rp", "rp_id", type=STORED_ID, default=None, help="Only this routing point.")
@click.option("--since", default=None, help="Only from this date (YYYY-MM-DD or ISO 8601).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
def history_command(
    history_path: str,
    server: str | None,
    rp_id: int | None,
    since: str | None,
    output_format: str,
) -> None:
    """Print the timeline of changes the watcher recorded."""
    file = history_file(history_path)
    if file is not None and not file.exists():
        # Reading never creates: a typo in the path is said, not answered with nothing.
        raise click.ClickException(
            f"no history at {history_path}; the watcher creates it: "
            f"routing-points watch --history {history_path} ..."
        )
    history = open_history(history_path)
    try:
        starting = _since(since)
        records = [event.as_dict() for event in history.timeline(server, rp_id, starting)]
        if output_format == "json":
            sys.stdout.write(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        if output_format == "csv":
            writer = csv.DictWriter(sys.stdout, fieldnames=EVENT_FIELDS)
            writer.writeheader()
            writer.writerows(records)
            return
        table = DataTable(*EVENT_FIELDS)
        for record in records:
            table.add_row(*("" if record[f] is None else str(record[f]) for f in EVENT_FIELDS))
        console = table_console(table)
        console.print(table)
        if rp_id is not None:
            console.print(f"flags of routing point {rp_id}, snapshot by snapshot:")
            for line in _flag_lines(history, server, rp_id, starting):
                console.print(line, markup=False)
    finally:
        history.close()
