"""Refusals by operation, local day and kind, counted where admission decides them;
and, when Redis keeps the limits, the calls per token and day for the console's history.

A refusal costs the caller nothing and must cost the server little: each worker counts in
memory and adds its counts to the store about once a second (and when it stops), so a
flood of refusals is one small write a second, and every worker's counts add up. With the
embedded limits the store's usage counters are written through already; with Redis they
live in Redis for one day only, so their copy for the console is added the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from sqlalchemy import Engine, select

from routing_points.store.admin import dialect_insert
from routing_points.store.schema import refusal_counters, usage_counters

logger = logging.getLogger("routing_points.store")
FLUSH_EVERY_S = 1.0
STOP_FLUSH_S = 5.0


class RefusalLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: Counter[tuple[int, str, str]] = Counter()
        self._charges: Counter[tuple[int, str, int]] = Counter()
        self._task: asyncio.Task[None] | None = None

    def note(self, operation_id: int, day: str, kind: str) -> None:
        self._pending[(operation_id, day, kind)] += 1

    def charged(self, token_id: int, operation_id: int, day: str, cost: int) -> None:
        self._charges[(token_id, day, operation_id)] += cost

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
                logger.warning("refusal counts not written yet: %s", exc)

    async def flush(self) -> None:
        if not self._pending and not self._charges:
            return
        pending, self._pending = self._pending, Counter()
        charges, self._charges = self._charges, Counter()
        try:
            await asyncio.to_thread(add_counts, self.engine, dict(pending), dict(charges))
        except Exception:
            self._pending.update(pending)
            self._charges.update(charges)
            raise


def add_counts(
    engine: Engine,
    counts: dict[tuple[int, str, str], int],
    charges: dict[tuple[int, str, int], int] | None = None,
) -> None:
    with engine.begin() as conn:
        for (token_id, day, operation_id), cost in (charges or {}).items():
            charge = dialect_insert(conn)(usage_counters).values(
                token_id=token_id, day=day, operation_id=operation_id, count=cost
            )
            conn.execute(
                charge.on_conflict_do_update(
                    index_elements=[usage_counters.c.token_id, usage_counters.c.day],
                    set_={"count": usage_counters.c.count + charge.excluded.count},
                )
            )
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
