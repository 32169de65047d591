"""Replace all of an operation's routing points with a given set, in one transaction.

A mirror applies each upstream snapshot this way: readers see the old set or the new one,
never a mix, and points that are gone upstream vanish. Only the differences are written,
and the operation's version (hence its ETags and cached bodies) moves only when something
did change, so an unchanged snapshot changes nothing for local consumers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from routing_points.store import records
from routing_points.store.engine import dialect_insert, refresh_point_statistics
from routing_points.store.errors import Invalid
from routing_points.store.schema import meta, routing_points
from routing_points.store.tenants import bump_version, operation_row

# SQLite allows 32,766 bound parameters per statement.
CHUNK = 2_000
COLUMNS = ("rp_name", "ivr_active", "chat_active", "interaction_active", "crm_active")


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    total: int
    added: int
    changed: int
    deleted: int
    # The operation's version after the replace (unchanged when nothing changed).
    version: int

    @property
    def modified(self) -> bool:
        return bool(self.added or self.changed or self.deleted)


def _stored_values(row: Any) -> dict[str, Any]:
    values = {column: getattr(row, column) for column in COLUMNS}
    for flag in records.FLAG_FIELDS:
        values[flag] = bool(values[flag])
    values["last_use_at"] = row.last_use_at
    return values


def _validated(
    raw_records: Iterable[Mapping[str, Any]], zone: ZoneInfo
) -> dict[int, dict[str, Any]]:
    wanted: dict[int, dict[str, Any]] = {}
    for index, record in enumerate(raw_records, start=1):
        try:
            change = records.point_change(dict(record), zone, require_name=True)
        except records.InvalidValue as exc:
            raise Invalid(f"record {index}: {exc}") from None
        if change.rp_id in wanted:
            raise Invalid(f"record {index}: rp_id {change.rp_id} appears twice")
        values = dict(change.values)
        for flag in records.FLAG_FIELDS:
            values.setdefault(flag, False)
        values.setdefault("last_use_at", None)
        wanted[change.rp_id] = values
    return wanted


def replace_points(
    engine: Engine,
    nomenclature: str,
    raw_records: Iterable[Mapping[str, Any]],
    *,
    meta_values: Callable[[int], Mapping[str, str]] | None = None,
) -> ReplaceResult:
    """Make the operation's routing points exactly `raw_records` (complete records).

    `meta_values(version)` gives meta rows to write in the same transaction, knowing the
    resulting version (a mirror keeps its upstream ETag there, tied to that version).
    """
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        wanted = _validated(raw_records, ZoneInfo(operation.timezone))
        stored = {
            row.rp_id: _stored_values(row)
            for row in conn.execute(
                select(routing_points).where(routing_points.c.operation_id == operation.id)
            )
        }
        added = [
            {"operation_id": operation.id, "rp_id": rp_id, **values}
            for rp_id, values in wanted.items()
            if rp_id not in stored
        ]
        changed = [
            {"new_rp_id": rp_id, **{f"new_{k}": v for k, v in values.items()}}
            for rp_id, values in wanted.items()
            if rp_id in stored and stored[rp_id] != values
        ]
        gone = [rp_id for rp_id in stored if rp_id not in wanted]
        _apply(conn, operation.id, added, changed, gone)
        version = operation.version
        if added or changed or gone:
            bump_version(conn, operation.id)
            version += 1
        if meta_values is not None:
            _write_meta(conn, meta_values(version))
    refresh_point_statistics(engine, len(added) + len(changed) + len(gone))
    return ReplaceResult(len(wanted), len(added), len(changed), len(gone), version)


def _apply(
    conn: Connection,
    operation_id: int,
    added: list[dict[str, Any]],
    changed: list[dict[str, Any]],
    gone: list[int],
) -> None:
    for start in range(0, len(gone), CHUNK):
        conn.execute(
            delete(routing_points)
            .where(routing_points.c.operation_id == operation_id)
            .where(routing_points.c.rp_id.in_(gone[start : start + CHUNK]))
        )
    for start in range(0, len(added), CHUNK):
        conn.execute(insert(routing_points), added[start : start + CHUNK])
    if changed:
        statement = (
            update(routing_points)
            .where(routing_points.c.operation_id == operation_id)
            .where(routing_points.c.rp_id == bindparam("new_rp_id"))
            .values({column: bindparam(f"new_{column}") for column in (*COLUMNS, "last_use_at")})
        )
        for start in range(0, len(changed), CHUNK):
            conn.execute(statement, changed[start : start + CHUNK])


def _write_meta(conn: Connection, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        statement = dialect_insert(conn)(meta).values(key=key, value=value)
        conn.execute(
            statement.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value})
        )


def write_meta(engine: Engine, values: Mapping[str, str]) -> None:
    """Several meta rows in one transaction."""
    with engine.begin() as conn:
        _write_meta(conn, values)


def read_meta(engine: Engine, prefix: str) -> dict[str, str]:
    """Every meta row whose key starts with `prefix`."""
    with engine.connect() as conn:
        rows = conn.execute(select(meta.c.key, meta.c.value).where(meta.c.key.startswith(prefix)))
        return {str(key): str(value) for key, value in rows}
