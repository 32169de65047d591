"""Operations (the tenants) and their tokens: reads and writes shared by the CLI and the API.

Routing points are in `store.points`, usage events in `store.usage`, the store's refusals
in `store.errors`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from routing_points.store import records
from routing_points.store.errors import Conflict, Invalid, NotFound
from routing_points.store.schema import operations, tokens
from routing_points.store.secrets import hash_secret, new_secret
from routing_points.store.sessions import end_sessions_of


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
    # After `tokens rotate` with a grace period: until when the previous secret works.
    previous_valid_until: int | None = None
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class NewToken:
    id: int
    secret: str


def _now() -> int:
    return int(time.time())


# The columns of `Operation`, in its field order.
OPERATION_COLUMNS = (
    operations.c.id,
    operations.c.nomenclature,
    operations.c.name,
    operations.c.licenses,
    operations.c.timezone,
    operations.c.version,
)


def operation_row(conn: Connection, nomenclature: str, *, for_writing: bool = False) -> Operation:
    """The operation, or NotFound; for use inside a caller's transaction.

    `for_writing` locks its row first (PostgreSQL; SQLite writes one at a time anyway), as
    every transaction that changes its points does: they then take the points' row locks
    one transaction at a time, so two of them never deadlock (bulk writes of [3, 6] and
    [6, 3] did), and a record is never kept while its operation is being changed.
    """
    query = select(*OPERATION_COLUMNS).where(operations.c.nomenclature == nomenclature)
    if for_writing:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"operation {nomenclature} does not exist")
    return Operation(*row)


def bump_version(conn: Connection, operation_id: int) -> None:
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
            return operation_row(conn, nomenclature)
    except IntegrityError:
        raise Conflict(f"operation {nomenclature} already exists") from None


def list_operations(engine: Engine) -> list[Operation]:
    with engine.connect() as conn:
        rows = conn.execute(select(*OPERATION_COLUMNS).order_by(operations.c.nomenclature)).all()
    return [Operation(*row) for row in rows]


def get_operation(engine: Engine, nomenclature: str) -> Operation:
    with engine.connect() as conn:
        return operation_row(conn, nomenclature)


def add_token(
    engine: Engine,
    nomenclature: str,
    description: str = "",
    daily_limit: int | None = None,
    scope: str = "read",
    expires_at: int | None = None,
    *,
    after_id: int | None = None,
) -> NewToken:
    """A new token, its secret returned once. With `after_id`, only if the operation's
    newest token is still that one (0: none): a form posted twice makes one token."""
    try:
        records.daily_limit(daily_limit)
    except records.InvalidValue as exc:
        raise Invalid(str(exc)) from None
    if scope not in ("read", "admin"):
        raise Invalid(f"scope: {scope!r} is not read or admin")
    if len(description) > 255:
        raise Invalid("description: must be at most 255 characters")
    secret = new_secret()
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=after_id is not None)
        if after_id is not None and newest_token_id(conn, operation.id) != after_id:
            raise Conflict(
                "a token has been created since this page was shown: nothing was created "
                "(reload the page to see the tokens as they are)"
            )
        token_id = conn.execute(
            insert(tokens)
            .values(
                operation_id=operation.id,
                description=description,
                secret_hash=hash_secret(secret),
                daily_limit=daily_limit,
                scope=scope,
                created_at=_now(),
                expires_at=expires_at,
            )
            .returning(tokens.c.id)
        ).scalar_one()
    return NewToken(token_id, secret)


def newest_token_id(conn: Connection, operation_id: int) -> int:
    """The operation's newest token id, 0 without any."""
    newest = conn.execute(
        select(func.max(tokens.c.id)).where(tokens.c.operation_id == operation_id)
    ).scalar_one()
    return int(newest or 0)


def list_tokens(engine: Engine, nomenclature: str) -> list[TokenSummary]:
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        rows = conn.execute(
            select(
                tokens.c.id,
                tokens.c.description,
                tokens.c.daily_limit,
                tokens.c.scope,
                tokens.c.created_at,
                tokens.c.revoked_at,
                tokens.c.previous_valid_until,
                tokens.c.expires_at,
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
            row.previous_valid_until,
            row.expires_at,
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


# How long a rotated-out secret keeps working by default: the CLI's --grace, the console's.
DEFAULT_GRACE_S = 3600


def secret_version(secret_hash: str) -> str:
    """Which secret a token has, for a form to name (a digest of its digest: nothing of the
    secret), so that a form posted twice does not act twice."""
    return hashlib.sha256(secret_hash.encode()).hexdigest()[:16]


def rotate_token(
    engine: Engine,
    token_id: int,
    grace_s: int,
    now: int | None = None,
    *,
    version: str | None = None,
) -> NewToken:
    """A new secret for the same token (its id, limits and counters stay).

    The previous secret keeps working for `grace_s` seconds, so the clients can be
    switched over without a gap; 0 refuses it at once. Only the one secret it replaces is
    kept: rotating again ends the grace period of the one before. With `version`, only the
    secret of that version is replaced (a form reloaded after its rotation is refused).
    """
    if grace_s < 0:
        raise Invalid(f"grace: must be 0 or more seconds, got {grace_s}")
    now = _now() if now is None else now
    secret = new_secret()
    with engine.begin() as conn:
        row = conn.execute(
            select(tokens.c.secret_hash, tokens.c.revoked_at).where(tokens.c.id == token_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"token {token_id} does not exist")
        if row.revoked_at is not None:
            raise Conflict(f"token {token_id} is revoked: create a new one instead")
        if version is not None and not hmac.compare_digest(
            version, secret_version(row.secret_hash)
        ):
            raise Conflict(
                f"token {token_id} has had a new secret since this page was shown: nothing "
                "was rotated (reload the page to see the tokens as they are)"
            )
        conn.execute(
            update(tokens)
            .where(tokens.c.id == token_id)
            .values(
                secret_hash=hash_secret(secret),
                previous_secret_hash=row.secret_hash if grace_s > 0 else None,
                previous_valid_until=now + grace_s if grace_s > 0 else None,
            )
        )
        end_sessions_of(conn, token_id)  # the grace is for API clients, not for people
    return NewToken(token_id, secret)
