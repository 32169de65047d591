"""What the CLI's commands share: the database option, and every failure as one line.

A mistake names what was wrong (the setting, the URL without its password, the file) and
says what failed; only `migrate`, `serve` and `demo` may create a store.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import orjson
import redis
from pydantic import ValidationError
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from routing_points.settings import Settings, unknown_variables
from routing_points.store import audit, migrate
from routing_points.store.engine import create_sync_engine
from routing_points.store.errors import StoreError
from routing_points.store.factory import (
    LIMITS_LOCK_FUNCTIONS,
    LIMITS_LOCK_REFUSED,
    LOCAL_LIMITS_LOCK,
    sole_process,
)
from routing_points.store.ledger import ensure_ledger, ledger_path

P = ParamSpec("P")
R = TypeVar("R")

database_option = click.option(
    "--database",
    "database_url",
    metavar="URL",
    default=None,
    help="Database URL (default: ROUTING_POINTS_DATABASE_URL, else sqlite:///routing-points.db).",
)

# Options that set a field directly: a bad value names the option, not the variable.
_OPTION_NAMES = {"database_url": "--database", "redis_url": "--redis"}


def settings_for(database_url: str | None, **overrides: Any) -> Settings:
    unknown = unknown_variables(os.environ)
    if unknown:
        raise click.ClickException("; ".join(unknown))
    if database_url is not None:
        overrides["database_url"] = database_url
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise click.ClickException(settings_problem(exc, set(overrides))) from None


def settings_problem(exc: ValidationError, given: set[str]) -> str:
    """Every problem as `NAME: rule`, on one line (pydantic's own text spans several)."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "settings"
        name = _OPTION_NAMES[field] if field in given else f"ROUTING_POINTS_{field.upper()}"
        problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def safe_url(database_url: str) -> str:
    """The URL as it can be shown: never with its password."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the database URL"


def _reason(exc: BaseException) -> str:
    """The driver's own words, first line only (psycopg adds hints on further lines)."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def store_unusable(database_url: str, exc: BaseException) -> click.ClickException:
    return click.ClickException(f"cannot use the database {safe_url(database_url)}: {_reason(exc)}")


def missing_database(settings: Settings) -> click.ClickException:
    return click.ClickException(
        f"no database at {settings.sqlite_path}; create it with: "
        f"routing-points migrate --database {settings.database_url}"
    )


def require_folder(path: Path) -> None:
    """A SQLite file about to be created must have its folder already: a missing one is a
    typo in the path, never made on the user's behalf."""
    if not path.parent.is_dir():
        raise click.ClickException(
            f"cannot create the database {path}: the folder {path.parent} does not exist"
        )


def open_store(database_url: str | None, *, create: bool = False) -> Engine:
    """The store, migrated to the current schema.

    Reading never creates: without `create` a missing SQLite file is refused, so a typo
    in a path is reported instead of answered from a new empty store.
    """
    settings = settings_for(database_url)
    if settings.is_sqlite:
        path = settings.sqlite_path
        if not create and not path.exists():
            raise missing_database(settings)
        if create:
            require_folder(path)
    engine = create_sync_engine(settings.database_url)
    try:
        if not create and not inspect(engine).has_table("alembic_version"):
            engine.dispose()
            raise click.ClickException(
                f"no routing-points store in {safe_url(settings.database_url)}; create it "
                f"with: routing-points migrate --database {safe_url(settings.database_url)}"
            )
        migrate.upgrade(engine)
    except (DBAPIError, SQLAlchemyError, OSError) as exc:
        engine.dispose()
        if settings.is_sqlite and create and _created_empty(settings.sqlite_path):
            settings.sqlite_path.unlink(missing_ok=True)
        raise store_unusable(settings.database_url, exc) from None
    return engine


def _created_empty(path: Path) -> bool:
    return path.exists() and path.stat().st_size == 0


def check_store_free(settings: Settings) -> None:
    """A second server on one store is refused with one line, before it starts: SQLite
    is served by one process (the app itself holds it: `store.factory`), and PostgreSQL
    by one server without Redis, or by servers that all have Redis (the app holds an
    advisory lock, alone or shared)."""
    if settings.is_sqlite:
        with sole_process(settings):
            check_ledger(settings.sqlite_path)
            return
    shared = settings.redis_url is not None
    function, unlock = LIMITS_LOCK_FUNCTIONS[shared]
    engine = create_sync_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            held = conn.execute(text(f"SELECT {function}({LOCAL_LIMITS_LOCK})")).scalar_one()
            if held:
                conn.execute(text(f"SELECT {unlock}({LOCAL_LIMITS_LOCK})"))
    except (DBAPIError, SQLAlchemyError) as exc:
        raise store_unusable(settings.database_url, exc) from None
    finally:
        engine.dispose()
    if not held:
        where = safe_url(settings.database_url)
        raise click.ClickException(LIMITS_LOCK_REFUSED[shared].format(where=where))


def check_ledger(database: Path) -> None:
    """The embedded store's charge ledger (store/ledger.py) must be a file the server can
    write, made here if there is none, where a fault is one line."""
    from routing_points.store.sqlite import connect

    path = ledger_path(database)
    try:
        if path.exists() or path.is_symlink():
            with path.open("r+b"):
                pass
        with contextlib.closing(connect(database)) as connection:
            ensure_ledger(database, connection)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise click.ClickException(
            f"cannot write {path}, the server's charge ledger: {reason}"
        ) from None
    except sqlite3.Error as exc:
        raise click.ClickException(
            f"cannot start the charge ledger of {database}: {type(exc).__name__}: {exc}"
        ) from None


def check_redis(settings: Settings) -> None:
    """A Redis that refuses us (no or a wrong password, a database it does not have) is a
    mistake, named before anything is created. One that does not answer is an outage the
    server rides out (refusing calls with 503 until it answers): a warning, and it starts."""
    url = settings.redis_url
    if url is None:
        return
    patience_s = max(settings.redis_timeout_s, 2.0)
    refused = f"cannot use Redis at {safe_url(url)}"
    try:
        # A cluster's node answers PING as a lone server does.
        client = redis.Redis.from_url(
            url, socket_timeout=patience_s, socket_connect_timeout=patience_s
        )
    except ValueError as exc:  # a query option redis-py cannot read (?db=abc)
        raise click.ClickException(f"{refused}: {exc}") from None
    try:
        client.ping()
    except redis.AuthenticationError as exc:  # before ConnectionError, its base
        reason = str(exc) if make_url(url).password else "it asks for a password"
        raise click.ClickException(f"{refused}: {reason}") from None
    except redis.ResponseError as exc:
        raise click.ClickException(f"{refused}: {exc}") from None
    except redis.InvalidResponse as exc:  # something else listens there (the API's port?)
        raise click.ClickException(f"{refused}: what answers there is not Redis ({exc})") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        then = "served without limits" if settings.redis_fail_open else "refused with 503"
        click.echo(
            f"Warning: Redis at {safe_url(url)} does not answer ({exc}); "
            f"calls are {then} until it does",
            err=True,
        )
    finally:
        client.close()


def check_port_free(host: str, port: int) -> None:
    """Fail before anything is created when the server could not listen anyway."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise click.ClickException(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            # Not this machine's address: the host is wrong, not the port.
            fix = "--host" if exc.errno == errno.EADDRNOTAVAIL else "--port"
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {exc.strerror} (choose another with {fix})"
            ) from None


def store_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a refused store request into one line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        except (DBAPIError, SQLAlchemyError) as exc:
            url = kwargs.get("database_url")
            shown = settings_for(url if isinstance(url, str) else None).database_url
            raise store_unusable(shown, exc) from None

    return wrapper


def print_json(document: Any) -> None:
    """One JSON document on stdout, for scripts (`--json`)."""
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def iso_utc(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
)


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


def timestamp_text(epoch: int | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
