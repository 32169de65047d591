"""Routing point writes, shared by the CLI and the admin API: all or nothing.

Every write runs in one transaction and bumps the operation's version when what
`routing_points` would answer changes, so ETags and cached bodies follow at once, in every
worker (each request reads the version with its token). A bulk write that changes nothing
(a file imported again) leaves the version, and so every client's ETag, as it was.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from routing_points.store import records
from routing_points.store.engine import dialect_insert, refresh_point_statistics
from routing_points.store.errors import Conflict, Invalid, NotFound
from routing_points.store.reader import PointRow
from routing_points.store.schema import routing_points
from routing_points.store.tenants import Operation, bump_version, operation_row

# SQLite allows 32,766 bound parameters per statement; 8 columns a row.
UPSERT_CHUNK = 2_000


def _upsert_statement(conn: Connection, columns: Sequence[str]) -> Any:
    statement = dialect_insert(conn)(routing_points)
    return statement.on_conflict_do_update(
        index_elements=[routing_points.c.operation_id, routing_points.c.rp_id],
        set_={column: statement.excluded[column] for column in columns},
    )


def _update_statement(operation_id: int, columns: Sequence[str]) -> Any:
    return (
        update(routing_points)
        .where(routing_points.c.operation_id == operation_id)
        .where(routing_points.c.rp_id == bindparam("new_rp_id"))
        .values({column: bindparam(f"new_{column}") for column in columns})
    )


@dataclass(frozen=True, slots=True)
class UpsertResult:
    # The records accepted (written, or already so), and the points `replace` deleted.
    upserted: int
    deleted: int
    # Of the upserted, those every field of which was already as stored: not written.
    unchanged: int = 0


def upsert_points(
    engine: Engine,
    nomenclature: str,
    raw_records: Iterable[dict[str, Any]],
    *,
    describe: str = "record",
    first_index: int = 1,
    replace: bool = False,
) -> UpsertResult:
    """Validate every record, then write them all in one transaction, or nothing.

    Records are grouped by the set of fields they carry: fields a record omits are
    left as they are on an existing point (and take defaults on a new one). With
    `replace`, the operation's points that are not in the records are deleted.
    """
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        zone = ZoneInfo(operation.timezone)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        seen: set[int] = set()
        for index, record in enumerate(raw_records, start=first_index):
            try:
                change = records.point_change(record, zone, require_name=False)
            except records.InvalidValue as exc:
                raise Invalid(f"{describe} {index}: {exc}") from None
            if change.rp_id in seen:
                raise Invalid(f"{describe} {index}: rp_id {change.rp_id} appears twice")
            seen.add(change.rp_id)
            key = tuple(sorted(change.values))
            row = {"operation_id": operation.id, "rp_id": change.rp_id, **change.values}
            groups.setdefault(key, []).append(row)
        if not seen and not replace:
            return UpsertResult(0, 0)
        # Read once: which records are new, and which change nothing.
        stored = stored_points(conn, operation.id, seen)
        nameless_new = [
            row["rp_id"]
            for columns, rows in groups.items()
            if "rp_name" not in columns
            for row in rows
            if row["rp_id"] not in stored
        ]
        if nameless_new:
            raise Invalid(f"rp_id {min(nameless_new)}: a new routing point needs an rp_name")
        unchanged = _drop_unchanged(groups, stored)
        for columns, rows in groups.items():
            if not columns or not rows:
                continue
            # Without a name a record can only update: an INSERT of it would fail NOT NULL
            # before ON CONFLICT is considered.
            statement = (
                _upsert_statement(conn, columns)
                if "rp_name" in columns
                else _update_statement(operation.id, columns)
            )
            for start in range(0, len(rows), UPSERT_CHUNK):
                chunk = rows[start : start + UPSERT_CHUNK]
                if "rp_name" not in columns:
                    chunk = [{f"new_{k}": v for k, v in row.items()} for row in chunk]
                conn.execute(statement, chunk)
        deleted = 0
        if replace:
            deleted = conn.execute(
                delete(routing_points)
                .where(routing_points.c.operation_id == operation.id)
                .where(routing_points.c.rp_id.not_in(seen))
            ).rowcount
        written = len(seen) - unchanged
        if not written and not deleted:
            # Nothing the answer shows changed: a new version would only make every client
            # download the whole answer again.
            return UpsertResult(len(seen), 0, unchanged)
        bump_version(conn, operation.id)
    refresh_point_statistics(engine, written + deleted)
    return UpsertResult(len(seen), deleted, unchanged)


def already_stored(stored: Mapping[Any, Any] | None, values: Mapping[str, Any]) -> bool:
    """Whether a stored point (a row's mapping, or None) already has every value given,
    by column: a write of them would change nothing."""
    return stored is not None and all(stored[column] == value for column, value in values.items())


def stored_points(
    conn: Connection, operation_id: int, rp_ids: Collection[int]
) -> dict[int, Mapping[Any, Any]]:
    """The operation's stored points among `rp_ids`, by rp_id (their rows' mappings)."""
    wanted = list(rp_ids)
    stored: dict[int, Mapping[Any, Any]] = {}
    for start in range(0, len(wanted), UPSERT_CHUNK):
        for row in conn.execute(
            select(routing_points)
            .where(routing_points.c.operation_id == operation_id)
            .where(routing_points.c.rp_id.in_(wanted[start : start + UPSERT_CHUNK]))
        ):
            stored[row.rp_id] = row._mapping
    return stored


def _drop_unchanged(
    groups: dict[tuple[str, ...], list[dict[str, Any]]], stored: Mapping[int, Mapping[Any, Any]]
) -> int:
    """Take out of `groups` the rows whose every field is already as stored; how many."""
    unchanged = 0
    for rows in groups.values():
        kept = [row for row in rows if not already_stored(stored.get(row["rp_id"]), row)]
        unchanged += len(rows) - len(kept)
        rows[:] = kept
    return unchanged


def contract_row(row: Any) -> PointRow:
    """A stored routing point as the hot path reads it: the raw columns, in order."""
    return (
        row.rp_id,
        row.rp_name,
        int(row.ivr_active),
        int(row.chat_active),
        int(row.interaction_active),
        int(row.crm_active),
        row.last_use_at,
    )


def list_points(engine: Engine, nomenclature: str) -> tuple[Operation, list[Any]]:
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        rows = conn.execute(
            select(routing_points)
            .where(routing_points.c.operation_id == operation.id)
            .order_by(routing_points.c.rp_id)
        ).all()
    return operation, list(rows)


def create_point(engine: Engine, nomenclature: str, record: dict[str, Any]) -> int:
    """Create one routing point; Conflict if its rp_id exists."""
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        try:
            change = records.point_change(record, ZoneInfo(operation.timezone), require_name=True)
        except records.InvalidValue as exc:
            raise Invalid(str(exc)) from None
        exists = conn.execute(
            select(routing_points.c.rp_id)
            .where(routing_points.c.operation_id == operation.id)
            .where(routing_points.c.rp_id == change.rp_id)
        ).first()
        if exists is not None:
            raise Conflict(f"routing point {change.rp_id} already exists")
        conn.execute(
            insert(routing_points).values(
                operation_id=operation.id, rp_id=change.rp_id, **change.values
            )
        )
        bump_version(conn, operation.id)
    return change.rp_id


def delete_point(engine: Engine, nomenclature: str, rp_id: int) -> None:
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        done = conn.execute(
            delete(routing_points)
            .where(routing_points.c.operation_id == operation.id)
            .where(routing_points.c.rp_id == rp_id)
        )
        if done.rowcount == 0:
            raise NotFound(f"routing point {rp_id} does not exist")
        bump_version(conn, operation.id)


def delete_points(engine: Engine, nomenclature: str, rp_ids: Sequence[int]) -> int:
    """Delete these routing points: all of them, or none if any does not exist."""
    wanted = sorted(set(rp_ids))
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        existing: set[int] = set()
        for start in range(0, len(wanted), UPSERT_CHUNK):
            chunk = wanted[start : start + UPSERT_CHUNK]
            existing.update(
                conn.execute(
                    select(routing_points.c.rp_id)
                    .where(routing_points.c.operation_id == operation.id)
                    .where(routing_points.c.rp_id.in_(chunk))
                ).scalars()
            )
        missing = [rp for rp in wanted if rp not in existing]
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise NotFound(
                f"routing point(s) {shown} do not exist in operation {nomenclature}: "
                "nothing was deleted"
            )
        for start in range(0, len(wanted), UPSERT_CHUNK):
            conn.execute(
                delete(routing_points)
                .where(routing_points.c.operation_id == operation.id)
                .where(routing_points.c.rp_id.in_(wanted[start : start + UPSERT_CHUNK]))
            )
        bump_version(conn, operation.id)
    return len(wanted)


def get_point(engine: Engine, nomenclature: str, rp_id: int) -> tuple[Operation, Any]:
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        row = conn.execute(
            select(routing_points)
            .where(routing_points.c.operation_id == operation.id)
            .where(routing_points.c.rp_id == rp_id)
        ).one_or_none()
    if row is None:
        raise NotFound(f"routing point {rp_id} does not exist")
    return operation, row


def set_point(
    engine: Engine, nomenclature: str, rp_id: int, changes: dict[str, Any]
) -> frozenset[str]:
    """Change fields of one existing routing point; the columns that changed (none when
    every value given was already so, and nothing was written)."""
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        zone = ZoneInfo(operation.timezone)
        try:
            change = records.point_change({"rp_id": rp_id, **changes}, zone, require_name=False)
        except records.InvalidValue as exc:
            raise Invalid(str(exc)) from None
        if not change.values:
            raise Invalid("nothing to change: give at least one field")
        stored = stored_points(conn, operation.id, [change.rp_id]).get(change.rp_id)
        if stored is None:
            raise NotFound(f"routing point {rp_id} does not exist in operation {nomenclature}")
        changed = {
            column: value
            for column, value in change.values.items()
            if not already_stored(stored, {column: value})
        }
        if not changed:
            return frozenset()  # (a form saved as it was): the version, and ETags, stay
        conn.execute(
            update(routing_points)
            .where(routing_points.c.operation_id == operation.id)
            .where(routing_points.c.rp_id == change.rp_id)
            .values(**changed)
        )
        bump_version(conn, operation.id)
    return frozenset(changed)


def count_points(engine: Engine, nomenclature: str) -> int:
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        return int(
            conn.execute(
                select(func.count()).where(routing_points.c.operation_id == operation.id)
            ).scalar_one()
        )
