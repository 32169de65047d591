"""The embedded store on the hot path: stdlib sqlite3, no ORM, no thread hop for small reads.

Small indexed reads and the one counter write per request run directly on the event loop:
they take tens of microseconds, far less than a thread-pool hand-off. Page reads, which
can return 60,000 rows, run on one dedicated thread with its own connection, so they
never stall the loop and can be interrupted when the time limit strikes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from routing_points.store.engine import configure_sqlite_connection
from routing_points.store.reader import (
    PAGE_COLUMNS,
    PRINCIPAL_COLUMNS,
    PointRow,
    Principal,
    StoreUnavailable,
)

T = TypeVar("T")

# Built from constant column lists only: no value is ever formatted into SQL.
_PRINCIPAL_SQL = f"""
SELECT {PRINCIPAL_COLUMNS}
FROM tokens t JOIN operations o ON o.id = t.operation_id
WHERE t.secret_hash = ? AND t.revoked_at IS NULL
"""

_PAGE_SQL = f"""
SELECT {PAGE_COLUMNS}
FROM routing_points
WHERE operation_id = ? AND rp_id > ? {{routing}}
ORDER BY routing_points.rp_id
LIMIT ?
"""


_CHARGE_SQL = """
INSERT INTO usage_counters (token_id, day, operation_id, count) VALUES (?, ?, ?, ?)
ON CONFLICT (token_id, day) DO UPDATE SET count = count + excluded.count
"""
_LOAD_SQL = "SELECT token_id, count FROM usage_counters WHERE operation_id = ? AND day = ?"


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    configure_sqlite_connection(connection)
    return connection


class SqliteReader:
    """Reads for the request path, from one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loop_connection = connect(path)
        self._page_connection = connect(path)
        self._page_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rp-pages")

    async def principal(self, secret_hash: str) -> Principal | None:
        try:
            row = self.loop_connection.execute(_PRINCIPAL_SQL, (secret_hash,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        return None if row is None else Principal(*row)

    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]:
        try:
            return self.loop_connection.execute(_LOAD_SQL, (operation_id, day)).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def charge(self, token_id: int, day: str, operation_id: int, cost: int) -> None:
        """One upsert, committed before it returns (autocommit; WAL, synchronous=NORMAL)."""
        try:
            self.loop_connection.execute(_CHARGE_SQL, (token_id, day, operation_id, cost))
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def page(
        self, operation_id: int, after: int, routing: int | None, limit: int
    ) -> list[PointRow]:
        args: tuple[int, ...]
        if routing is None:
            sql, args = _PAGE_SQL.format(routing=""), (operation_id, after, limit)
        else:
            sql = _PAGE_SQL.format(routing="AND rp_id = ?")
            args = (operation_id, after, routing, limit)
        connection = self._page_connection

        def fetch() -> list[PointRow]:
            return connection.execute(sql, args).fetchall()

        return await self._on_page_thread(fetch, connection)

    async def _on_page_thread(self, work: Callable[[], T], connection: sqlite3.Connection) -> T:
        future = asyncio.get_running_loop().run_in_executor(self._page_thread, work)
        try:
            return await asyncio.shield(future)
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        except asyncio.CancelledError:
            # The time limit (or a disconnect) cancelled the consumption: stop the query too.
            connection.interrupt()
            future.add_done_callback(_discard_outcome)
            raise

    async def ping(self) -> None:
        self.loop_connection.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        self._page_thread.shutdown(wait=True)
        self._page_connection.close()
        self.loop_connection.close()


def _discard_outcome(future: asyncio.Future[Any]) -> None:
    """An abandoned read's result or error is of no use to anyone: do not log it."""
    if not future.cancelled():
        future.exception()
