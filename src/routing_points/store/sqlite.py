"""The embedded store on the hot path: stdlib sqlite3, no ORM, no thread hop for small reads.

Small indexed reads and the one counter write per request run directly on the event loop:
they take tens of microseconds, far less than a thread-pool hand-off. Page reads, which
can return 60,000 rows, run on one dedicated thread with its own connection, so they
never stall the loop and can be interrupted when the time limit strikes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from routing_points.futures import discard_outcome
from routing_points.store.engine import configure_sqlite_connection
from routing_points.store.reader import (
    PAGE_COLUMNS,
    PRINCIPAL_COLUMNS,
    PRINCIPAL_VALID_UNTIL,
    PRINCIPAL_WHERE,
    PointRow,
    Principal,
    StoreUnavailable,
)

T = TypeVar("T")

# Built from constant column lists only: no value is ever formatted into SQL.
_PRINCIPAL_SQL = f"""
SELECT {PRINCIPAL_COLUMNS}, {PRINCIPAL_VALID_UNTIL.format("?1")}
FROM tokens t JOIN operations o ON o.id = t.operation_id
WHERE {PRINCIPAL_WHERE.format("?1")}
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


PRINCIPAL_CACHE_SIZE = 100_000
# How long a check of PRAGMA data_version stays good (seconds).
VERSION_CHECK_S = 0.001


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
        self._principals: dict[str, Principal] = {}
        self._seen_version = -1
        self._charges: list[tuple[int, str, int, int]] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._checked_at = 0.0

    async def principal(self, secret_hash: str) -> Principal | None:
        """The live token with this digest; cached until anyone else writes to the file.

        `PRAGMA data_version` changes exactly when another connection (the CLI, the admin
        API, another process) has committed, so a revocation or a change of the operation
        is seen within a millisecond (the most the check is cached); this connection's own
        counter writes do not count, and they do not touch tokens or operations.
        """
        try:
            now = time.monotonic()
            if now - self._checked_at >= VERSION_CHECK_S:
                self._checked_at = now
                version = self.loop_connection.execute("PRAGMA data_version").fetchone()[0]
                if version != self._seen_version:
                    self._principals.clear()
                    self._seen_version = version
            cached = self._principals.get(secret_hash)
            if cached is not None:
                return cached
            row = self.loop_connection.execute(_PRINCIPAL_SQL, (secret_hash,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        if row is None:
            return None  # unknown tokens are not cached: anyone can make up more
        if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
            self._principals.clear()
        principal = self._principals[secret_hash] = Principal(*row)
        return principal

    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]:
        try:
            return self.loop_connection.execute(_LOAD_SQL, (operation_id, day)).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def charge(self, token_id: int, day: str, operation_id: int, cost: int) -> None:
        """Record a charge; return once it is committed (WAL, synchronous=NORMAL).

        Group commit: the charges of every request that reaches this point in the same
        turn of the event loop are written in one transaction, since a commit costs ten
        times an upsert. Each request still waits for its own commit before it answers.
        """
        loop = asyncio.get_running_loop()
        if not self._charges:
            loop.call_soon(self._commit_charges)
        committed = loop.create_future()
        self._charges.append((token_id, day, operation_id, cost))
        self._waiting.append(committed)
        await committed

    def _commit_charges(self) -> None:
        charges, waiting = self._charges, self._waiting
        self._charges, self._waiting = [], []
        connection = self.loop_connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(_CHARGE_SQL, charges)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            for committed in waiting:
                if not committed.done():
                    committed.set_exception(StoreUnavailable(str(exc)))
        else:
            for committed in waiting:
                if not committed.done():  # its request may have been cancelled meanwhile
                    committed.set_result(None)

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
            future.add_done_callback(discard_outcome)
            raise

    async def ping(self) -> None:
        self.loop_connection.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        self._page_thread.shutdown(wait=True)
        self._page_connection.close()
        self.loop_connection.close()
