"""Administrative reads and writes of the store, shared by the CLI and the admin API.

Every write runs in one transaction and bumps the operation's version when what
`routing_points` would answer changes, so ETags and cached bodies follow at once.

Errors::

    StoreError
    ├── NotFound      the operation, token or routing point does not exist
    ├── Conflict      it exists already
    └── Invalid       a value cannot be stored (wraps records.InvalidValue)
"""

from __future__ import annotations

import secrets as _random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from routing_points.store import records
from routing_points.store.schema import meta, operations, routing_points, tokens
from routing_points.store.secrets import hash_secret, new_secret

# SQLite allows 32,766 bound parameters per statement; 8 columns a row.
UPSERT_CHUNK = 2_000


class StoreError(Exception):
    """An administrative request the store refuses, with a message for a person."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class Invalid(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class Operation:
    id: int
    nomenclature: str
    name: str
    licenses: int
    timezone: str
    version: int


@dataclass(frozen=True, slots=True)
class TokenSummary:
    id: int
    nomenclature: str
    description: str
    daily_limit: int | None
    scope: str
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class NewToken:
    id: int
    secret: str


def _now() -> int:
    return int(time.time())


def _operation(conn: Connection, nomenclature: str) -> Operation:
    row = conn.execute(
        select(
            operations.c.id,
            operations.c.nomenclature,
            operations.c.name,
            operations.c.licenses,
            operations.c.timezone,
            operations.c.version,
        ).where(operations.c.nomenclature == nomenclature)
    ).one_or_none()
    if row is None:
        raise NotFound(f"operation {nomenclature} does not exist")
    return Operation(*row)


def _bump_version(conn: Connection, operation_id: int) -> None:
    conn.execute(
        update(operations)
        .where(operations.c.id == operation_id)
        .values(version=operations.c.version + 1)
    )


def add_operation(
    engine: Engine, nomenclature: str, name: str, licenses: int, timezone: str
) -> Operation:
    try:
        nomenclature = records.nomenclature(nomenclature)
        licenses = records.licenses(licenses)
        timezone = records.timezone(timezone)
        if not name.strip() or len(name) > 255:
            raise records.InvalidValue("name", "must be text of 1 to 255 characters")
    except records.InvalidValue as exc:
        raise Invalid(str(exc)) from None
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(operations).values(
                    nomenclature=nomenclature,
                    name=name,
                    licenses=licenses,
                    timezone=timezone,
                    version=1,
                    etag_salt=_random.token_hex(8),
                    created_at=_now(),
                )
            )
            return _operation(conn, nomenclature)
    except IntegrityError:
        raise Conflict(f"operation {nomenclature} already exists") from None


def list_operations(engine: Engine) -> list[Operation]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                operations.c.id,
                operations.c.nomenclature,
                operations.c.name,
                operations.c.licenses,
                operations.c.timezone,
                operations.c.version,
            ).order_by(operations.c.nomenclature)
        ).all()
    return [Operation(*row) for row in rows]


def get_operation(engine: Engine, nomenclature: str) -> Operation:
    with engine.connect() as conn:
        return _operation(conn, nomenclature)


def add_token(
    engine: Engine,
    nomenclature: str,
    description: str = "",
    daily_limit: int | None = None,
    scope: str = "read",
) -> NewToken:
    if daily_limit is not None and daily_limit < 1:
        raise Invalid(f"daily limit: must be at least 1, got {daily_limit}")
    if scope not in ("read", "admin"):
        raise Invalid(f"scope: {scope!r} is not read or admin")
    if len(description) > 255:
        raise Invalid("description: must be at most 255 characters")
    secret = new_secret()
    with engine.begin() as conn:
        operation = _operation(conn, nomenclature)
        token_id = conn.execute(
            insert(tokens)
            .values(
                operation_id=operation.id,
                description=description,
                secret_hash=hash_secret(secret),
                daily_limit=daily_limit,
                scope=scope,
                created_at=_now(),
            )
            .returning(tokens.c.id)
        ).scalar_one()
    return NewToken(token_id, secret)


def list_tokens(engine: Engine, nomenclature: str) -> list[TokenSummary]:
    with engine.connect() as conn:
        operation = _operation(conn, nomenclature)
        rows = conn.execute(
            select(
                tokens.c.id,
                tokens.c.description,
                tokens.c.daily_limit,
                tokens.c.scope,
                tokens.c.created_at,
                tokens.c.revoked_at,
            )
            .where(tokens.c.operation_id == operation.id)
            .order_by(tokens.c.id)
        ).all()
    return [
        TokenSummary(
            row.id,
            nomenclature,
            row.description,
            row.daily_limit,
            row.scope,
            row.created_at,
            row.revoked_at,
        )
        for row in rows
    ]


def revoke_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        revoked = conn.execute(
            select(tokens.c.revoked_at).where(tokens.c.id == token_id)
        ).one_or_none()
        if revoked is None:
            raise NotFound(f"token {token_id} does not exist")
        if revoked.revoked_at is not None:
            raise Conflict(f"token {token_id} is already revoked")
        conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked_at=_now()))


def _dialect_insert(conn: Connection) -> Any:
    """INSERT with ON CONFLICT support, for the dialect at hand."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _upsert_statement(conn: Connection, columns: Sequence[str]) -> Any:
    statement = _dialect_insert(conn)(routing_points)
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


def upsert_points(
    engine: Engine,
    nomenclature: str,
    raw_records: Iterable[dict[str, Any]],
    *,
    describe: str = "record",
) -> int:
    """Validate every record, then write them all in one transaction, or nothing.

    Records are grouped by the set of fields they carry: fields a record omits are
    left as they are on an existing point (and take defaults on a new one).
    """
    with engine.begin() as conn:
        operation = _operation(conn, nomenclature)
        zone = ZoneInfo(operation.timezone)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        seen: set[int] = set()
        for index, record in enumerate(raw_records, start=1):
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
        if not seen:
            return 0
        new_without_name = _new_ids_without_name(conn, operation.id, groups)
        if new_without_name:
            raise Invalid(f"rp_id {new_without_name}: a new routing point needs an rp_name")
        for columns, rows in groups.items():
            if not columns:
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
        _bump_version(conn, operation.id)
    return len(seen)


def _new_ids_without_name(
    conn: Connection, operation_id: int, groups: dict[tuple[str, ...], list[dict[str, Any]]]
) -> int | None:
    """The first rp_id that would be created without a name, if any."""
    nameless = [
        row["rp_id"] for key, rows in groups.items() if "rp_name" not in key for row in rows
    ]
    if not nameless:
        return None
    existing: set[int] = set()
    for start in range(0, len(nameless), UPSERT_CHUNK):
        chunk = nameless[start : start + UPSERT_CHUNK]
        existing.update(
            conn.execute(
                select(routing_points.c.rp_id).where(
                    and_(
                        routing_points.c.operation_id == operation_id,
                        routing_points.c.rp_id.in_(chunk),
                    )
                )
            ).scalars()
        )
    missing = [rp for rp in nameless if rp not in existing]
    return min(missing) if missing else None


def list_points(engine: Engine, nomenclature: str) -> tuple[Operation, list[Any]]:
    with engine.connect() as conn:
        operation = _operation(conn, nomenclature)
        rows = conn.execute(
            select(routing_points)
            .where(routing_points.c.operation_id == operation.id)
            .order_by(routing_points.c.rp_id)
        ).all()
    return operation, list(rows)


def set_point(engine: Engine, nomenclature: str, rp_id: int, changes: dict[str, Any]) -> None:
    """Change fields of one existing routing point."""
    with engine.begin() as conn:
        operation = _operation(conn, nomenclature)
        zone = ZoneInfo(operation.timezone)
        try:
            change = records.point_change({"rp_id": rp_id, **changes}, zone, require_name=False)
        except records.InvalidValue as exc:
            raise Invalid(str(exc)) from None
        if not change.values:
            raise Invalid("nothing to change: give at least one field")
        done = conn.execute(
            update(routing_points)
            .where(routing_points.c.operation_id == operation.id)
            .where(routing_points.c.rp_id == change.rp_id)
            .values(**change.values)
        )
        if done.rowcount == 0:
            raise NotFound(f"routing point {rp_id} does not exist in operation {nomenclature}")
        _bump_version(conn, operation.id)


def count_points(engine: Engine, nomenclature: str) -> int:
    with engine.connect() as conn:
        operation = _operation(conn, nomenclature)
        return int(
            conn.execute(
                select(func.count()).where(routing_points.c.operation_id == operation.id)
            ).scalar_one()
        )


def get_meta(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)


def set_meta(engine: Engine, key: str, value: str) -> None:
    with engine.begin() as conn:
        statement = _dialect_insert(conn)(meta).values(key=key, value=value)
        conn.execute(
            statement.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value})
        )
