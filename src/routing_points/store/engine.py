"""Engines for the admin side (CLI, migrations): synchronous SQLAlchemy Core.

SQLite connections all use WAL (readers never wait for the writer), enforce foreign keys
and wait for a busy writer instead of failing at once.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 10_000


def sync_url(database_url: str) -> str:
    """The SQLAlchemy URL with the driver this project uses for synchronous work."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def configure_sqlite_connection(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def create_sync_engine(database_url: str) -> Engine:
    engine = create_engine(sync_url(database_url))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            configure_sqlite_connection(dbapi_connection)

    return engine


def dialect_insert(conn: Connection) -> Any:
    """INSERT with ON CONFLICT support, for the dialect at hand."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


# Rows a bulk write must touch before PostgreSQL's statistics of the points are refreshed.
ANALYZE_FROM_ROWS = 1_000


def refresh_point_statistics(engine: Engine, rows: int) -> None:
    """After a bulk write to PostgreSQL, ANALYZE the points at once instead of waiting for
    autovacuum (a minute, or never where it is off). Without statistics the planner took
    134 s for a keep of 1,000 rendered records into 150,000 fresh points (1.4 s after):
    every keep timed out, and every version rendered every record again."""
    if rows < ANALYZE_FROM_ROWS or engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE routing_points")
        conn.commit()
