"""The watcher's history: every snapshot that differed, every change, and the webhook queue.

A snapshot and the events it caused are written in one transaction, and the next poll
compares with the newest stored snapshot, so a watcher killed at any moment and restarted
neither loses nor repeats an event. Events wait in the same table until the webhook has
taken them (`delivered_at`), which makes the table the delivery queue, in id order.

SQLite by default, or any SQLAlchemy URL; its schema is migrated with Alembic on open
(`watch.migrate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select, update

from routing_points.client.models import RoutingPoint
from routing_points.store.engine import create_sync_engine
from routing_points.watch import migrate
from routing_points.watch.diff import Change
from routing_points.watch.schema import events, snapshots, stale_points


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: int
    taken_at: float
    etag: str | None
    records: list[dict[str, Any]]

    def points(self) -> dict[int, RoutingPoint]:
        return {p.rp_id: p for p in map(RoutingPoint.from_record, self.records)}


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    server: str
    at: float
    change: Change

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "server": self.server,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            **self.change.as_dict(),
        }


def history_url(location: str) -> str:
    """A path is a SQLite file; anything with a scheme is a SQLAlchemy URL."""
    return location if "://" in location else f"sqlite:///{Path(location)}"


def history_file(location: str) -> Path | None:
    """The SQLite file a history location names; None for another database."""
    url = history_url(location)
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _encode(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _decode(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


class History:
    def __init__(self, location: str) -> None:
        url = history_url(location)
        self.engine: Engine = create_sync_engine(url)
        migrate.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def latest(self, server: str) -> Snapshot | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(snapshots)
                .where(snapshots.c.server == server)
                .order_by(snapshots.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return Snapshot(row.id, row.taken_at, row.etag, orjson.loads(row.records))

    def stale(self, server: str) -> set[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(stale_points.c.rp_id).where(stale_points.c.server == server)
            ).scalars()
            return set(rows)

    def record(
        self,
        server: str,
        changes: list[Change],
        *,
        records: list[dict[str, Any]] | None,
        etag: str | None,
        stale: set[int],
        now: float,
    ) -> list[Event]:
        """Store a new snapshot (when `records` is given), its changes and the stale set."""
        with self.engine.begin() as conn:
            snapshot_id = None
            if records is not None:
                snapshot_id = conn.execute(
                    insert(snapshots)
                    .values(
                        server=server,
                        taken_at=now,
                        etag=etag,
                        records=orjson.dumps(records).decode(),
                    )
                    .returning(snapshots.c.id)
                ).scalar_one()
            stored = []
            for change in changes:
                event_id = conn.execute(
                    insert(events)
                    .values(
                        server=server,
                        snapshot_id=snapshot_id,
                        at=now,
                        kind=change.kind,
                        rp_id=change.rp_id,
                        rp_name=change.rp_name,
                        field=change.field,
                        old=_encode(change.old),
                        new=_encode(change.new),
                    )
                    .returning(events.c.id)
                ).scalar_one()
                stored.append(Event(event_id, server, now, change))
            conn.execute(delete(stale_points).where(stale_points.c.server == server))
            if stale:
                conn.execute(
                    insert(stale_points), [{"server": server, "rp_id": rp} for rp in sorted(stale)]
                )
        return stored

    def _event(self, row: Any) -> Event:
        change = Change(
            row.kind, row.rp_id, row.rp_name, row.field, _decode(row.old), _decode(row.new)
        )
        return Event(row.id, row.server, row.at, change)

    def undelivered(self, limit: int) -> list[Event]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events)
                .where(events.c.delivered_at.is_(None))
                .order_by(events.c.id)
                .limit(limit)
            ).all()
        return [self._event(row) for row in rows]

    def mark_delivered(self, event_ids: list[int], now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(events).where(events.c.id.in_(event_ids)).values(delivered_at=now))

    def timeline(self, server: str | None, rp_id: int | None, since: float | None) -> list[Event]:
        query = select(events).order_by(events.c.id)
        if server is not None:
            query = query.where(events.c.server == server)
        if rp_id is not None:
            query = query.where(events.c.rp_id == rp_id)
        if since is not None:
            query = query.where(events.c.at >= since)
        with self.engine.connect() as conn:
            return [self._event(row) for row in conn.execute(query)]

    def snapshots_of(self, server: str | None, since: float | None) -> list[Snapshot]:
        query = select(snapshots).order_by(snapshots.c.id)
        if server is not None:
            query = query.where(snapshots.c.server == server)
        if since is not None:
            query = query.where(snapshots.c.taken_at >= since)
        with self.engine.connect() as conn:
            return [
                Snapshot(row.id, row.taken_at, row.etag, orjson.loads(row.records))
                for row in conn.execute(query)
            ]
