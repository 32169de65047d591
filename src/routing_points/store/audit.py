"""The audit log: every change made by the CLI, the admin API or the console, append-only.

Rows are only ever inserted; the one deletion is the retention purge of rows older than
the configured number of days, run when a row is written.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select

from routing_points.store.records import MAX_EPOCH, MIN_EPOCH
from routing_points.store.schema import audit_log

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: int
    nomenclature: str | None
    actor: str
    address: str
    action: str
    detail: str

    @property
    def readable_detail(self) -> str:
        """The detail for people: instants (`*_at`, epoch seconds as stored, for machines)
        written as UTC dates and times; the rest as stored."""
        try:
            values = orjson.loads(self.detail or "{}")
        except orjson.JSONDecodeError:
            return self.detail
        if not isinstance(values, dict):
            return self.detail
        for key, value in values.items():
            if key.endswith("_at") and isinstance(value, int) and MIN_EPOCH <= value <= MAX_EPOCH:
                values[key] = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(value))
        return orjson.dumps(values).decode()


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def record(
    engine: Engine,
    *,
    actor: str,
    address: str,
    action: str,
    nomenclature: str | None,
    detail: dict[str, Any] | None = None,
    retention_days: int | None = None,
) -> None:
    """Append one entry (never a secret in `detail`), and drop those past retention."""
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(
            insert(audit_log).values(
                at=now,
                nomenclature=nomenclature,
                actor=actor[:255],
                address=address[:64],
                action=action[:64],
                detail=orjson.dumps(detail or {}, option=orjson.OPT_SORT_KEYS).decode(),
            )
        )
        if retention_days is not None:
            conn.execute(delete(audit_log).where(audit_log.c.at < now - retention_days * DAY_S))


def entries(
    engine: Engine,
    nomenclature: str | None = None,
    *,
    since: int | None = None,
    limit: int = 500,
) -> list[AuditEntry]:
    """Newest first; one operation's entries, or every entry (nomenclature None)."""
    query = select(
        audit_log.c.id,
        audit_log.c.at,
        audit_log.c.nomenclature,
        audit_log.c.actor,
        audit_log.c.address,
        audit_log.c.action,
        audit_log.c.detail,
    )
    if nomenclature is not None:
        query = query.where(audit_log.c.nomenclature == nomenclature)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    query = query.order_by(audit_log.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [AuditEntry(*row) for row in conn.execute(query).all()]
