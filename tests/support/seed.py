"""Operations, tokens and routing points written straight into a store."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from routing_points.store import errors as store_errors
from routing_points.store import points as point_store
from routing_points.store import tenants


@dataclass
class Tenant:
    """An operation with a token, seeded straight into the store."""

    server: str
    token: str
    token_id: int
    points: list[dict[str, Any]] = field(default_factory=list)


def point(rp_id: int, name: str | None = None, **flags: str) -> dict[str, Any]:
    return {
        "rp_id": str(rp_id),
        "rp_name": name or f"Point {rp_id}",
        "ivr_active": flags.get("ivr_active", "yes"),
        "chat_active": flags.get("chat_active", "no"),
        "interaction_active": flags.get("interaction_active", "yes"),
        "crm_active": flags.get("crm_active", "no"),
        "last_use": flags.get("last_use", ""),
    }


def add_tenant(
    engine: Engine,
    server: str,
    points: list[dict[str, Any]] | None = None,
    *,
    licenses: int = 1,
    timezone: str = "UTC",
    daily_limit: int | None = None,
) -> Tenant:
    with contextlib.suppress(store_errors.Conflict):
        tenants.add_operation(engine, server, f"Operation {server}", licenses, timezone)
    token = tenants.add_token(engine, server, f"token of {server}", daily_limit)
    points = points if points is not None else []
    if points:
        point_store.upsert_points(engine, server, points)
    return Tenant(server, token.secret, token.id, points)


def stale_records(engine: Engine) -> int:
    """Routing points whose record JSON is not (yet) kept: a render keeps them after it."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM routing_points WHERE record_json IS NULL")
            ).one()[0]
        )
