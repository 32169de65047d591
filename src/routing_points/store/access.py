"""Who may call, and from where: token expiry, rotation, limits, platform tokens, allow-lists.

Expiry is a column the hot path reads with the token, so an expired token is refused like
a revoked one without a write when it expires. The IP allow-list is one text column of
the operation (space-separated CIDR networks) for the same reason: admission reads it with
the token, in every worker, and any change to it is seen at once.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, insert, select, update

from routing_points.store import records, tenants
from routing_points.store.errors import Invalid, NotFound
from routing_points.store.schema import operations, platform_tokens, tokens, usage_counters
from routing_points.store.secrets import hash_secret, new_secret
from routing_points.store.tenants import NewToken, Operation, operation_row

NETWORKS_PER_LICENSE = 10
# Past this, an expiry means "never" in all but name, and dates stop being printable.
MAX_EXPIRY_S = 100 * 366 * 86_400
_DURATION = re.compile(r"^([1-9][0-9]{0,5})\s*([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _now() -> int:
    return int(time.time())


def parse_expiry(text: str, now: float | None = None) -> int:
    """`--expires`: a duration (90m, 12h, 30d, 2w), a date (the token lasts through it, UTC),
    or an ISO 8601 date and time; always in the future."""
    now = time.time() if now is None else now
    value = text.strip()
    match = _DURATION.match(value.lower())
    if match:
        return _within_bounds(text, int(now) + int(match.group(1)) * _UNIT_S[match.group(2)], now)
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            moment = int(day.timestamp()) + 86_400
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            moment = int(parsed.timestamp())
    except ValueError:
        raise Invalid(
            f"expires: {text!r} is not a duration (30d, 12h, 90m, 2w), a date (YYYY-MM-DD) "
            "or a date and time"
        ) from None
    return _within_bounds(text, moment, now)


def _within_bounds(text: str, moment: int, now: float) -> int:
    if moment <= now:
        raise Invalid(f"expires: {text!r} is in the past")
    if moment > now + MAX_EXPIRY_S:
        raise Invalid(f"expires: {text!r} is more than 100 years away (leave it empty: never)")
    return moment


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token as the console shows it: never its secret."""

    id: int
    description: str
    scope: str
    daily_limit: int | None
    created_at: int
    revoked_at: int | None
    expires_at: int | None
    last_used_day: str | None
    # Which secret it has (`tenants.secret_version`), for the rotate form to name.
    version: str


def token_views(engine: Engine, nomenclature: str) -> tuple[Operation, list[TokenView]]:
    last_used = (
        select(usage_counters.c.token_id, func.max(usage_counters.c.day).label("day"))
        .group_by(usage_counters.c.token_id)
        .subquery()
    )
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        rows = conn.execute(
            select(
                tokens.c.id,
                tokens.c.description,
                tokens.c.scope,
                tokens.c.daily_limit,
                tokens.c.created_at,
                tokens.c.revoked_at,
                tokens.c.expires_at,
                last_used.c.day,
                tokens.c.secret_hash,
            )
            .select_from(tokens.outerjoin(last_used, last_used.c.token_id == tokens.c.id))
            .where(tokens.c.operation_id == operation.id)
            .order_by(tokens.c.id)
        ).all()
    return operation, [
        TokenView(*row[:-1], version=tenants.secret_version(row.secret_hash)) for row in rows
    ]


def token_operation(engine: Engine, token_id: int) -> str:
    """The nomenclature of the token's operation, or NotFound."""
    with engine.connect() as conn:
        found = conn.execute(
            select(operations.c.nomenclature)
            .select_from(tokens.join(operations, operations.c.id == tokens.c.operation_id))
            .where(tokens.c.id == token_id)
        ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"token {token_id} does not exist")
    return str(found)


def _live_token(engine: Engine, token_id: int, nomenclature: str) -> None:
    if token_operation(engine, token_id) != nomenclature:
        raise NotFound(f"token {token_id} does not exist")


def set_token_terms(
    engine: Engine,
    nomenclature: str,
    token_id: int,
    *,
    daily_limit: int | None,
    expires_at: int | None,
) -> None:
    """Replace a token's daily limit and expiry (None: no limit, no expiry)."""
    try:
        records.daily_limit(daily_limit)
    except records.InvalidValue as exc:
        raise Invalid(str(exc)) from None
    _live_token(engine, token_id, nomenclature)
    with engine.begin() as conn:
        conn.execute(
            update(tokens)
            .where(tokens.c.id == token_id)
            .values(daily_limit=daily_limit, expires_at=expires_at)
        )


def set_token_expiry(engine: Engine, token_id: int, expires_at: int | None) -> None:
    with engine.begin() as conn:
        done = conn.execute(
            update(tokens).where(tokens.c.id == token_id).values(expires_at=expires_at)
        )
    if done.rowcount == 0:
        raise NotFound(f"token {token_id} does not exist")


def rotate_token(
    engine: Engine, nomenclature: str, token_id: int, version: str, grace_s: int
) -> NewToken:
    """`tenants.rotate_token` for one operation's token, of the secret `version` a form
    named: the console's (it had no grace, and a reload rotated again)."""
    _live_token(engine, token_id, nomenclature)
    return tenants.rotate_token(engine, token_id, grace_s, version=version)


# -- platform tokens ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlatformToken:
    id: int
    description: str
    created_at: int
    revoked_at: int | None
    expires_at: int | None


def add_platform_token(
    engine: Engine, description: str = "", expires_at: int | None = None
) -> NewToken:
    if len(description) > 255:
        raise Invalid("description: must be at most 255 characters")
    secret = new_secret()
    with engine.begin() as conn:
        token_id = conn.execute(
            insert(platform_tokens)
            .values(
                description=description,
                secret_hash=hash_secret(secret),
                created_at=_now(),
                expires_at=expires_at,
            )
            .returning(platform_tokens.c.id)
        ).scalar_one()
    return NewToken(token_id, secret)


def list_platform_tokens(engine: Engine) -> list[PlatformToken]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                platform_tokens.c.id,
                platform_tokens.c.description,
                platform_tokens.c.created_at,
                platform_tokens.c.revoked_at,
                platform_tokens.c.expires_at,
            ).order_by(platform_tokens.c.id)
        ).all()
    return [PlatformToken(*row) for row in rows]


def revoke_platform_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        done = conn.execute(
            update(platform_tokens)
            .where(platform_tokens.c.id == token_id)
            .where(platform_tokens.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
    if done.rowcount == 0:
        raise NotFound(f"platform token {token_id} does not exist or is already revoked")


# -- operation settings -------------------------------------------------------------------


def set_operation(
    engine: Engine,
    nomenclature: str,
    *,
    name: str | None = None,
    licenses: int | None = None,
    timezone: str | None = None,
) -> Operation:
    values: dict[str, object] = {}
    try:
        if licenses is not None:
            values["licenses"] = records.licenses(licenses)
        if timezone is not None:
            values["timezone"] = records.timezone(timezone)
        if name is not None:
            if not name.strip() or len(name) > 255:
                raise records.InvalidValue("name", "must be text of 1 to 255 characters")
            values["name"] = name
    except records.InvalidValue as exc:
        raise Invalid(str(exc)) from None
    if not values:
        raise Invalid("nothing to change: give --name, --licenses or --timezone")
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        if "licenses" in values:
            allowed = int(str(values["licenses"])) * NETWORKS_PER_LICENSE
            if len(_networks(conn, operation.id)) > allowed:
                raise Invalid(
                    f"licenses: the IP allow-list has more than {allowed} entries; "
                    "remove some first"
                )
        if values.get("timezone", operation.timezone) != operation.timezone:
            # Answers show `last_use` in the operation's zone: a new zone is a new version,
            # and its answers and ETags follow at once. The name and the licenses are in
            # no answer, so the clients' ETags stay (a change would cost each a download).
            values["version"] = operations.c.version + 1
        conn.execute(update(operations).where(operations.c.id == operation.id).values(**values))
        return operation_row(conn, nomenclature)


# -- IP allow-list ------------------------------------------------------------------------


def network(text: str) -> str:
    """A CIDR network (or a lone address), normalised; Invalid otherwise."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise Invalid(f"address: {text!r} is not an IP address or CIDR network") from None


def _networks(conn: Connection, operation_id: int) -> list[str]:
    text = conn.execute(
        select(operations.c.ip_allowlist).where(operations.c.id == operation_id)
    ).scalar_one()
    return str(text).split()


def allowlist(engine: Engine, nomenclature: str) -> tuple[Operation, list[str]]:
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        return operation, _networks(conn, operation.id)


def _write_networks(engine: Engine, nomenclature: str, change: str, entry: str) -> list[str]:
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature)
        entries = _networks(conn, operation.id)
        if change == "add":
            if entry in entries:
                raise Invalid(f"address: {entry} is already in the allow-list")
            cap = operation.licenses * NETWORKS_PER_LICENSE
            if len(entries) >= cap:
                raise Invalid(
                    f"address: the allow-list holds {cap} entries, the most for "
                    f"{operation.licenses} licenses ({NETWORKS_PER_LICENSE} per license)"
                )
            entries.append(entry)
        else:
            if entry not in entries:
                raise NotFound(f"address: {entry} is not in the allow-list")
            entries.remove(entry)
        conn.execute(
            update(operations)
            .where(operations.c.id == operation.id)
            .values(ip_allowlist=" ".join(entries))
        )
    return entries


def add_network(engine: Engine, nomenclature: str, text: str) -> str:
    entry = network(text)
    _write_networks(engine, nomenclature, "add", entry)
    return entry


def remove_network(engine: Engine, nomenclature: str, text: str) -> str:
    entry = network(text)
    _write_networks(engine, nomenclature, "remove", entry)
    return entry
