"""`serve` and `demo`: run the API on uvicorn (uvloop + httptools when available); `migrate`.

The three commands that may create a store.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shlex
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import uvicorn

from routing_points import contract
from routing_points.cli.common import (
    check_port_free,
    check_redis,
    check_store_free,
    database_option,
    open_store,
    require_folder,
    safe_url,
    settings_for,
    store_errors,
)
from routing_points.cli.help import WholeNumber, example
from routing_points.server import create_app
from routing_points.server.addon import ServerAddon
from routing_points.server.logformat import configure_logging
from routing_points.server.protocol import bounded_protocol
from routing_points.settings import Settings
from routing_points.sqlite_files import remove_sqlite_files
from routing_points.store import meta as store_meta
from routing_points.store import points, tenants
from routing_points.store.factory import SoleProcess, sole_process

DEMO_DATABASE = "sqlite:///routing-points-demo.db"
# The README's examples use this operation, so they run verbatim against the demo.
DEMO_SERVER = "0032"
DEMO_MARKER = "demo"
DEMO_TIMEZONE = "America/Bogota"

_DEMO_NAMES = [
    "Sales line",
    "Support chat",
    "Billing IVR",
    "Collections outbound",
    "WhatsApp sales",
    "Technical support L1",
    "Technical support L2",
    "Claims",
    "Appointments",
    "VIP customers",
    "Web chat",
    "Retention",
    "Surveys after call",
    "Complaints",
    "Card activation",
    "Fraud alerts",
    "Delivery tracking",
    "Returns",
    "Partners line",
    "Emergency line",
    "Instagram DM",
    "Facebook Messenger",
    "Email to chat",
    "Callback requests",
    "Night shift",
]


def run_server(
    settings: Settings,
    host: str,
    port: int,
    workers: int = 1,
    addon: ServerAddon | None = None,
) -> None:
    configure_logging(settings.log_level, settings.log_format)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": settings.log_level.lower(),
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
        # The app reads X-Forwarded-For itself, and only from `trusted_proxies`: uvicorn's
        # own proxy handling would believe any local caller's header.
        "proxy_headers": False,
        # No WebSocket endpoint: an Upgrade request is an ordinary one, answered in the
        # envelope (uvicorn answered it 403 text/plain with an empty body).
        "ws": "none",
        # No uvicorn handlers of its own: its records reach the root's handler, in the
        # settings' format and with their time (its own lines had neither).
        "log_config": None,
    }
    if workers == 1:
        # The app holds the SQLite file for its lifetime (store.factory).
        app = create_app(settings, addon=addon)
        uvicorn.run(app, http=bounded_protocol(settings), **common)
        return
    # Workers are fresh interpreters: they read their settings from the environment.
    # (`serve` has checked that several workers have PostgreSQL and Redis.)
    os.environ["ROUTING_POINTS_DATABASE_URL"] = settings.database_url
    os.environ["ROUTING_POINTS_REDIS_URL"] = settings.redis_url or ""
    with tempfile.TemporaryDirectory(prefix="routing-points-metrics-") as metrics_dir:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        uvicorn.run(
            "routing_points.server.app:app_from_environment",
            factory=True,
            workers=workers,
            # A worker importing the app on a busy machine can take more than uvicorn's
            # default 5 s to answer its first health check; killed for that, it never starts.
            timeout_worker_healthcheck=30,
            http="routing_points.server.protocol:from_environment",
            **common,
        )


@click.command(epilog=example("routing-points migrate --database sqlite:///routing-points.db"))
@database_option
@store_errors
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema."""
    settings = settings_for(database_url)
    created = settings.is_sqlite and not settings.sqlite_path.exists()
    open_store(database_url, create=True).dispose()
    if created:
        click.echo(f"created {settings.database_url} with the current schema")
    else:
        click.echo("the database schema is up to date")


host_option = click.option("--host", default="127.0.0.1", show_default=True)
port_option = click.option(
    "--port", default=8000, show_default=True, type=WholeNumber(1, 65535), help="TCP port."
)


@click.command(
    epilog=example(
        "routing-points serve --database sqlite:///routing-points.db",
        "routing-points serve --host 0.0.0.0 --workers 4 "
        "--database postgresql://rp@db/rp --redis redis://redis:6379/0",
    ),
)
@host_option
@port_option
@database_option
@click.option(
    "--redis",
    "redis_url",
    metavar="URL",
    default=None,
    help="Keep the limits in Redis, shared by every worker and host (ROUTING_POINTS_REDIS_URL).",
)
@click.option("--workers", type=WholeNumber(min=1), default=1, show_default=True)
@store_errors
def serve(
    host: str, port: int, database_url: str | None, redis_url: str | None, workers: int
) -> None:
    """Serve the API (migrating the database first).

    Everything that can be wrong is checked before anything is created: the settings,
    the port, Redis, the store, and that no other server keeps its limits in the same store.
    """
    overrides = {} if redis_url is None else {"redis_url": redis_url}
    settings = settings_for(database_url, **overrides)
    if workers > 1 and (settings.is_sqlite or not settings.redis_url):
        raise click.ClickException(
            "--workers above 1 needs PostgreSQL (--database postgresql://...) and Redis "
            "(--redis redis://...): the limits must be shared by every worker"
        )
    ready_to_serve(settings, host, port)
    _hint_if_empty(settings)
    run_server(settings, host, port, workers)


def _hint_if_empty(settings: Settings) -> None:
    """A store without an operation answers every token 403: say how to add one (a bare
    `serve` made an empty routing-points.db without a word)."""
    engine = open_store(settings.database_url)
    try:
        empty = not tenants.list_operations(engine)
    finally:
        engine.dispose()
    if empty:
        click.echo(
            "the store holds no operation yet: add one with routing-points operations add "
            f"0032 --name NAME --licenses 1 --database {safe_url(settings.database_url)}",
            err=True,
        )


def ready_to_serve(settings: Settings, host: str, port: int) -> None:
    """What a server checks before anything is created (the port, Redis), then its store,
    made or migrated, and that no other server keeps its limits there: `serve`, and the
    serving `mirror`."""
    check_port_free(host, port)
    check_redis(settings)
    if settings.is_sqlite:
        # Before it is opened: by another of its names (a hard link) beside a running
        # server, it would get a WAL of its own.
        SoleProcess(settings.sqlite_path).probe()
    open_store(settings.database_url, create=True).dispose()
    check_store_free(settings)


def _demo_points(rng: random.Random, now: int) -> list[dict[str, Any]]:
    records = []
    for index, name in enumerate(_DEMO_NAMES):
        is_chat = any(word in name for word in ("chat", "WhatsApp", "Instagram", "Messenger"))
        never_used = index % 6 == 5
        last_use = ""
        if not never_used:
            seconds_ago = rng.randint(60, 30 * 86_400)
            local = datetime.fromtimestamp(now - seconds_ago, ZoneInfo(DEMO_TIMEZONE))
            last_use = local.strftime("%Y-%m-%d %H:%M:%S")
        records.append(
            {
                "rp_id": str(101 + index),
                "rp_name": name,
                "ivr_active": "no" if is_chat else "yes",
                "chat_active": "yes" if is_chat else "no",
                "interaction_active": "yes" if rng.random() < 0.7 else "no",
                "crm_active": "yes" if rng.random() < 0.4 else "no",
                "last_use": last_use,
            }
        )
    return records


def create_demo_database(settings: Settings) -> str:
    """A fresh demo store; returns its token. Never replaces a database that is not a demo."""
    path = settings.sqlite_path
    if path.exists() and not _holds_nothing(path):
        engine = open_store(settings.database_url)
        is_demo = store_meta.get_meta(engine, DEMO_MARKER) == "1"
        engine.dispose()
        if not is_demo:
            raise click.ClickException(
                f"{path} exists and is not a demo database: refusing to replace it "
                "(pass --database with another file)"
            )
    # Built aside, then moved into place in one step: a Ctrl-C halfway leaves the old
    # file (or none), never a half-made one that no later run could tell from a user's.
    building = path.with_name(path.name + ".building")
    remove_sqlite_files(building)
    try:
        engine = open_store(f"sqlite:///{building}", create=True)
        store_meta.set_meta(engine, DEMO_MARKER, "1")
        tenants.add_operation(engine, DEMO_SERVER, "Acme (demo)", 1, DEMO_TIMEZONE)
        now = int(time.time())
        points.upsert_points(engine, DEMO_SERVER, _demo_points(random.Random(7), now))
        token = tenants.add_token(engine, DEMO_SERVER, "demo token")
        engine.dispose()  # the last connection: its WAL is checkpointed into the file
        remove_sqlite_files(path)
        os.replace(building, path)
    finally:
        remove_sqlite_files(building)
    return token.secret


def _holds_nothing(path: Path) -> bool:
    """An SQLite file without a single table (a demo interrupted by an older version): there
    is nothing in it to lose."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            tables: int = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            return tables == 0
    except sqlite3.Error:
        return False


def this_command() -> str:
    """How the user runs this program: `routing-points` when it is on PATH, else its path."""
    installed = Path(sys.executable).parent / "routing-points"
    on_path = shutil.which("routing-points")
    if on_path is not None and Path(on_path).resolve() == installed.resolve():
        return "routing-points"
    with contextlib.suppress(ValueError):
        return str(installed.relative_to(Path.cwd()))
    return str(installed)


def demo_banner(settings: Settings, host: str, port: int, secret: str) -> list[str]:
    """What the demo prints: its token, and commands that work against it as they are."""
    shown_host = host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:  # listening everywhere: here too
            shown_host = "127.0.0.1"
    base_url = f"http://{shown_host}:{port}"
    url = f"{base_url}{contract.ENDPOINT}?api={contract.ROUTING_POINTS}"
    program = shlex.quote(this_command())
    database = shlex.quote(settings.database_url)
    return [
        f"demo operation {DEMO_SERVER} with {len(_DEMO_NAMES)} routing points, "
        f"served on {base_url} from {settings.sqlite_path}",
        f"token: {secret}",
        f"try, from {Path.cwd()} (the client commands read the token from the environment):",
        f"  curl -s -H {shlex.quote('wolkvox-token: ' + secret)} {shlex.quote(url)}",
        f"  export ROUTING_POINTS_TOKEN={secret}",
        f"  {program} get --server {DEMO_SERVER} --base-url {base_url} --timezone {DEMO_TIMEZONE}",
        f"  {program} token-info --server {DEMO_SERVER} --base-url {base_url}",
        f"  {program} points list {DEMO_SERVER} --database {database}",
    ]


@click.command(
    epilog=example("routing-points demo", "routing-points demo --port 8080"),
)
@host_option
@port_option
@click.option(
    "--database",
    "database_url",
    metavar="URL",
    default=None,
    help=f"The demo's SQLite database (default: {DEMO_DATABASE}).",
)
@store_errors
def demo(host: str, port: int, database_url: str | None) -> None:
    """Create a fresh demo database (operation 0032, 25 routing points) and serve it.

    Its banner prints the token and the commands to try, ready to paste.
    """
    settings = settings_for(database_url or DEMO_DATABASE)
    if not settings.is_sqlite:
        raise click.ClickException("the demo runs on a SQLite database only")
    require_folder(settings.sqlite_path)
    check_port_free(host, port)
    with sole_process(settings):  # no server may read it half-made
        secret = create_demo_database(settings)
    for line in demo_banner(settings, host, port, secret):
        click.echo(line)
    sys.stdout.flush()
    run_server(settings, host, port)
