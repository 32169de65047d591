"""The watcher history's tables, as the queries see them; migrations/ creates them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

snapshots = Table(
    "watch_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("server", String(8), nullable=False),
    Column("taken_at", Float, nullable=False),
    Column("etag", String(128), nullable=True),
    # The records exactly as the service sent them.
    Column("records", Text, nullable=False),
    Index("ix_watch_snapshots_server", "server", "id"),
)

events = Table(
    "watch_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("server", String(8), nullable=False),
    Column("snapshot_id", Integer, nullable=True),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("rp_id", BigInteger, nullable=False),
    Column("rp_name", String(255), nullable=False),
    Column("field", String(32), nullable=True),
    Column("old", Text, nullable=True),
    Column("new", Text, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Index("ix_watch_events_server", "server", "id"),
    Index("ix_watch_events_undelivered", "delivered_at", "id"),
)

stale_points = Table(
    "watch_stale",
    metadata,
    Column("server", String(8), primary_key=True),
    Column("rp_id", BigInteger, primary_key=True),
)
