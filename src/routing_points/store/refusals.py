"""Refusals by operation, local day and kind, counted where admission decides them.

A refusal costs the caller nothing and must cost the server little: each worker counts in
memory and adds its counts to the store about once a second (and when it stops), so a
flood of refusals is one small write a second, and every worker's counts add up. (Calls
need no such copy: both limit backends write every charge through to the usage counters.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from sqlalchemy import Engine, select

from routing_points.store.engine import dialect_insert
from routing_points.store.schema import refusal_counters

logger = logging.getLogger("routing_points.store")
FLUSH_EVERY_S = 1.0
STOP_FLUSH_S = 5.0


class RefusalLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: Counter[tuple[int, str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None

    def note(self, operation_id: int, day: str, kind: str) -> None:
        self._pending[(operation_id, day, kind)] += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # A store that is down must neither fail nor hold the shutdown. Two tries: the
        # first may meet a pooled connection that a database restart left dead.
        for attempt in (1, 2):
            try:
                await asyncio.wait_for(self.flush(), timeout=STOP_FLUSH_S)
                return
            except Exception as exc:
                if attempt == 2:
                    logger.warning("counts not written at shutdown: %s", exc)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await self.flush()
            except Exception as exc:  # the counts wait for the next flush
                # One line: SQLAlchemy's own text adds the statement and a link below.
                cause = getattr(exc, "orig", None) or exc
                logger.warning(
                    "refusal counts not written yet: %s: %s", type(cause).__name__, cause
                )

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        try:
            await asyncio.to_thread(add_counts, self.engine, dict(pending))
        except Exception:
            self._pending.update(pending)
            raise


def add_counts(engine: Engine, counts: dict[tuple[int, str, str], int]) -> None:
    with engine.begin() as conn:
        for (operation_id, day, kind), count in counts.items():
            statement = dialect_insert(conn)(refusal_counters).values(
                operation_id=operation_id, day=day, kind=kind, count=count
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[
                        refusal_counters.c.operation_id,
                        refusal_counters.c.day,
                        refusal_counters.c.kind,
                    ],
                    set_={"count": refusal_counters.c.count + statement.excluded.count},
                )
            )


def refusals_on(engine: Engine, operation_id: int, day: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(refusal_counters.c.kind, refusal_counters.c.count)
            .where(refusal_counters.c.operation_id == operation_id)
            .where(refusal_counters.c.day == day)
        ).all()
    return {str(kind): int(count) for kind, count in rows}
