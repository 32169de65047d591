"""The embedded store on the hot path: stdlib sqlite3, no ORM, nothing that can wait on the loop.

Small indexed reads (the token lookup) run directly on the event loop: in WAL mode a
reader never waits for a writer, and they take microseconds, far less than a thread-pool
hand-off. A charge is recorded in the charge ledger (store/ledger.py), durable at once, and
folded into the counters at most every 50 ms. Folds, and the commits of charges the ledger
could not take, are tried on the loop's own connection first, with no busy wait: a commit
that finds SQLite's write lock free takes tens of microseconds, and committing on the
loop's connection leaves its `data_version`, hence the token cache, untouched. When
another process holds the lock (a CLI import of a million rows may keep it for seconds),
or the write fails, the work goes to one writer thread with its own connection that
waits for the lock, so the loop never does. Page reads, which can return 60,000 records
(SQLite joins their stored JSON: one value, no row objects), run on a thread of their own,
interruptible when the time limit strikes; the records they found stale are kept again
on the writer thread.

A write that fails names its real cause (disk full, read-only file), the failed
transaction is rolled back only if it is still open, and a connection that SQLite opened
read-only (a file or `-shm` that was not writable) is reopened, so the server recovers by
itself once the file is fixed. Readiness checks that the files can be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from routing_points.futures import discard_outcome, settle
from routing_points.outage import Outage
from routing_points.store.engine import configure_sqlite_connection
from routing_points.store.ledger import CAPACITY as LEDGER_CAPACITY
from routing_points.store.ledger import (
    MARK_SQL,
    META_KEY,
    ChargeLedger,
    FoldPlan,
    marked_up_to,
    open_ledger,
)
from routing_points.store.reader import (
    Changes,
    Charge,
    Principal,
    RenderedRecord,
    StoredPage,
    StoreUnavailable,
    by_rp_id,
)
from routing_points.store.sqlite_sql import (
    BEFORE,
    CHANGES_SQL,
    CHARGE_SQL,
    COUNT_SQL,
    KEEP_SQL,
    LOAD_SQL,
    NEXT_SQL,
    NO_ROUTING,
    PAGE_SQL,
    PRINCIPAL_SQL,
    PROBE_SQL,
    ROUTING,
    STALE_SQL,
    VERSION_SQL,
)

T = TypeVar("T")

logger = logging.getLogger("routing_points.store")

# Rendered records kept per write transaction: charges queued on the writer thread wait
# for one chunk at most.
KEEP_CHUNK = 1_000


PRINCIPAL_CACHE_SIZE = 100_000
# Counter commits on the loop between two checkpoints on the writer thread (a commit
# adds a page or two to the WAL: this keeps it near SQLite's default of 1,000 pages).
CHECKPOINT_EVERY = 500
# The most counters a fold updates on the event loop (about a millisecond); more go to
# the writer thread.
FOLD_ON_LOOP_MAX = 2_000
# How long a check of PRAGMA data_version stays good (seconds).
VERSION_CHECK_S = 0.001


def _in_snapshot(connection: sqlite3.Connection, read: Callable[[], T]) -> T:
    """`read` in one read transaction: all its statements see one snapshot, whatever is
    written meanwhile."""
    connection.execute("BEGIN")
    try:
        return read()
    finally:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("COMMIT")


def _keep_chunk(values: Sequence[tuple[object, ...]], connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(KEEP_SQL, values)
    connection.execute("COMMIT")


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    configure_sqlite_connection(connection)
    return connection


def connect_for_loop(path: Path) -> sqlite3.Connection:
    """The event loop's connection: it never waits for a lock and never checkpoints (the
    writer thread does both). Its reads need no lock to wait for: in WAL mode a reader is
    refused only by an exclusive-mode connection, or during a recovery at open."""
    connection = connect(path)
    connection.execute("PRAGMA busy_timeout=0")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


class SqliteReader:
    """Reads for the request path, from one SQLite file."""

    def __init__(self, path: Path, ledger_capacity: int = LEDGER_CAPACITY) -> None:
        self.path = path
        # First, on a connection of its own that waits for another process's write lock:
        # what a dead server left in the ledger is counted before anything reads. The
        # connections below then open on a settled WAL; one that found the WAL grown after
        # its files turned read-only would write its read mark into a mapped `-shm` page it
        # may no longer write, and fault (SIGBUS).
        with contextlib.closing(connect(path)) as connection:
            self.ledger: ChargeLedger = open_ledger(path, connection, ledger_capacity)
        try:
            self.loop_connection = connect_for_loop(path)
            self._page_connection = connect(path)
        except BaseException:
            self.ledger.close()
            raise
        self._page_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rp-pages")
        self._write_connection: sqlite3.Connection | None = None
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rp-writes")
        self._committing = False
        self.outage = Outage("store (SQLite)")
        self._principals: dict[str, Principal] = {}
        self._seen_version = -1
        self._charges: list[Charge] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._checked_at = 0.0
        self._loop_commits = 0
        self._checkpointing: asyncio.Future[None] | None = None
        self._folding = asyncio.Lock()
        self._folds = self.ledger.folds = FoldPlan(self.ledger, self.fold_charges)
        # Record a charge, durable on return (store/ledger.py): no commit, no wait; False
        # when the ledger is full (its folds have been failing): `charge` then. The
        # ledger's own append, which plans the fold: no call around it on the hot path.
        self.record_charge: Callable[[int, str, int, int], bool] = self.ledger.append
        if self.ledger.head > self.ledger.folded:
            with contextlib.suppress(RuntimeError):  # no loop running: the first charge folds
                self._folds.charged()  # what a dead server left, counted at once

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
            row = self.loop_connection.execute(PRINCIPAL_SQL, (secret_hash,)).fetchone()
        except sqlite3.Error as exc:
            cause = f"{type(exc).__name__}: {exc}"
            self.outage.failed(cause)
            raise StoreUnavailable(cause) from exc
        if row is None:
            return None  # unknown tokens are not cached: anyone can make up more
        if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
            self._principals.clear()
        principal = self._principals[secret_hash] = Principal(*row)
        return principal

    def forget_principals(self) -> None:
        self._checked_at = float("-inf")  # the next lookup reads data_version

    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]:
        """The day's counters, with what the ledger holds that they do not count yet (a
        dead server's, taken back at start; a fold's still under way): read on the loop,
        where a read never waits, so exact and at once even while another process holds
        SQLite's write lock."""
        connection = self.loop_connection

        def read() -> tuple[str | None, list[tuple[int, int]]]:
            mark = connection.execute(MARK_SQL, (META_KEY,)).fetchone()
            rows = connection.execute(LOAD_SQL, (operation_id, day)).fetchall()
            return (None if mark is None else mark[0]), rows

        try:
            mark, rows = _in_snapshot(connection, read)  # the mark and counts of one moment
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        counts = dict(rows)
        uncounted = self.ledger.uncounted(operation_id, day, marked_up_to(mark))
        for token_id, cost in uncounted.items():
            counts[token_id] = counts.get(token_id, 0) + cost
        return list(counts.items())

    async def fold_charges(self) -> None:
        """Count in `usage_counters` every charge recorded so far; raise if it cannot.

        One fold at a time: a mark must never pass charges a failed fold put back. On the
        loop's connection when the write lock is free and the fold is small (it leaves the
        token cache warm: a commit by another connection would clear it), else on the
        writer thread, which waits for the lock and names a fault."""
        async with self._folding:
            ledger = self.ledger
            if ledger.head <= ledger.folded:
                return
            upto, totals = ledger.take()
            try:
                if len(totals) > FOLD_ON_LOOP_MAX or not self._commit_on_loop(
                    lambda connection: ledger.fold(connection, upto, totals)
                ):
                    fold = functools.partial(ledger.fold_alone, upto=upto, totals=totals)
                    await self._on_write_thread(fold)
            except BaseException:
                ledger.put_back(totals)
                raise
            ledger.folded_up_to(upto)

    async def charge(self, token_id: int, day: str, operation_id: int, cost: int) -> None:
        """Record a charge; return once it is committed (WAL, synchronous=NORMAL). For a
        charge the ledger cannot take (`record_charge`), and for tests.

        Group commit: charges that arrive while the writer thread is busy are written
        together in its next transaction, since a commit costs ten times an upsert. Each
        request still waits for its own commit before it answers.
        """
        if self.ledger.full():
            # Its folds have failed for 65,536 charges: SQLite is not writable, and a commit
            # would wait behind them. Refused at once, as the store's outage.
            raise StoreUnavailable(f"{self.ledger.path.name} is full: SQLite cannot be written")
        loop = asyncio.get_running_loop()
        committed = loop.create_future()
        self._charges.append(Charge(token_id, day, operation_id, cost))
        self._waiting.append(committed)
        if not self._committing:
            self._committing = True
            loop.call_soon(self._commit_next)
        await committed

    def _commit_next(self) -> None:
        charges, waiting = self._charges, self._waiting
        if not charges:
            self._committing = False
            return
        self._charges, self._waiting = [], []
        if self._commit_on_loop(lambda connection: connection.executemany(CHARGE_SQL, charges)):
            for committed in waiting:
                settle(committed, None)
            # Charges that arrived during this commit: there are none (it was synchronous),
            # so the next batch starts with the next turn of the loop.
            self._committing = False
            return

        def write(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(CHARGE_SQL, charges)
            connection.execute("COMMIT")

        task = asyncio.ensure_future(self._on_write_thread(write))

        def done(task: asyncio.Future[None]) -> None:
            error = task.exception()
            for committed in waiting:
                settle(committed, error)
            self._commit_next()

        task.add_done_callback(done)

    def _commit_on_loop(self, write: Callable[[sqlite3.Connection], object]) -> bool:
        """`write` in a transaction on the loop's connection, if SQLite's write lock is free
        right now. Committing here leaves its `data_version` (the token cache) untouched.

        False when it is not (or the write failed): the writer thread then does it, waiting
        for the lock and naming the fault. A checkpoint never runs here (the connection's
        autocheckpoint is off): the writer thread runs one every CHECKPOINT_EVERY commits.
        """
        connection = self.loop_connection
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return False  # busy (the lock is held elsewhere), or worse: the thread will say
        try:
            write(connection)
            connection.execute("COMMIT")
        except sqlite3.Error:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            self._reopen_loop_connection()
            return False
        self._loop_commits += 1
        if self._loop_commits % CHECKPOINT_EVERY == 0:
            self._checkpoint_soon()
        return True

    def _reopen_loop_connection(self) -> None:
        """A connection whose write failed may be stuck read-only: the next one is not."""
        with contextlib.suppress(sqlite3.Error):
            self.loop_connection.close()
        self.loop_connection = connect_for_loop(self.path)
        self._seen_version = -1
        self._checked_at = 0.0

    def _checkpoint_soon(self) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return

        def checkpoint(connection: sqlite3.Connection) -> None:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        self._checkpointing = asyncio.ensure_future(self._on_write_thread(checkpoint))
        self._checkpointing.add_done_callback(discard_outcome)

    def _writer(self) -> sqlite3.Connection:
        """The writer thread's connection, (re)opened when needed."""
        if self._write_connection is None:
            self._write_connection = connect(self.path)
        return self._write_connection

    def _write_or_rollback(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._writer()
        try:
            return work(connection)
        except sqlite3.Error as exc:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            if not getattr(exc, "sqlite_errorname", "").startswith(
                ("SQLITE_BUSY", "SQLITE_LOCKED")
            ):
                # SQLite may have opened the file (or its -shm) read-only, or hit a full
                # disk: a new connection sees the fault fixed, an old one would not.
                self._write_connection = None
                connection.close()
            raise

    async def _on_write_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._write_thread, self._write_or_rollback, work)
        except sqlite3.Error as exc:
            cause = f"{type(exc).__name__}: {exc}"
            self.outage.failed(cause)
            raise StoreUnavailable(cause) from exc
        self.outage.ended()
        return result

    async def page(
        self, operation_id: int, after: int, routing: int | None, limit: int
    ) -> StoredPage:
        routing_sql = NO_ROUTING if routing is None else ROUTING
        connection = self._page_connection

        def fetch() -> StoredPage:
            version, timezone = connection.execute(VERSION_SQL, (operation_id,)).fetchone()
            past_cap = connection.execute(
                NEXT_SQL.format(routing=routing_sql), (operation_id, after, limit, routing)
            ).fetchone()
            before = "" if past_cap is None else BEFORE
            count, fresh, last, joined = connection.execute(
                PAGE_SQL.format(routing=routing_sql, before=before),
                (operation_id, after, None if past_cap is None else past_cap[0], routing),
            ).fetchone()
            stale = (
                connection.execute(
                    STALE_SQL.format(routing=routing_sql), (operation_id, after, last, routing)
                ).fetchall()
                if fresh < count
                else []
            )
            more = past_cap is not None
            return StoredPage(version, timezone, count, last, more, joined or b"", stale)

        return await self._on_page_thread(fetch, connection)

    async def changes(self, operation_id: int, since_version: int, limit: int) -> Changes:
        connection = self._page_connection

        def fetch() -> Changes:
            version, timezone = connection.execute(VERSION_SQL, (operation_id,)).fetchone()
            (total,) = connection.execute(COUNT_SQL, (operation_id,)).fetchone()
            rows = connection.execute(CHANGES_SQL, (operation_id, since_version, limit + 1))
            points = sorted(((row[:-1], row[-1]) for row in rows), key=by_rp_id)
            return Changes(version, timezone, total, points)

        return await self._on_page_thread(fetch, connection)

    async def keep_records(
        self, operation_id: int, timezone: str, records: list[RenderedRecord]
    ) -> None:
        """On the writer thread, a chunk per transaction. A failure (the file locked by
        another process for longer than the busy timeout, a full disk) is not an outage of
        the service: the records stay stale and are rendered again next time."""
        loop = asyncio.get_running_loop()
        values = [(record, operation_id, *row, timezone) for row, record in records]
        for start in range(0, len(values), KEEP_CHUNK):
            keep = functools.partial(_keep_chunk, values[start : start + KEEP_CHUNK])
            try:
                await loop.run_in_executor(self._write_thread, self._write_or_rollback, keep)
            except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: closed meanwhile
                logger.debug("rendered records not kept: %s", exc)
                return

    async def _on_page_thread(self, work: Callable[[], T], connection: sqlite3.Connection) -> T:
        """`work`'s reads on the page thread, in one snapshot."""
        future = asyncio.get_running_loop().run_in_executor(
            self._page_thread, _in_snapshot, connection, work
        )
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
        """Ready means writable: the file, its WAL and shared-memory files, and the folder
        (SQLite creates and deletes the WAL files), and the last write did not fail."""
        try:
            self.loop_connection.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        for path in (
            self.path,
            Path(f"{self.path}-wal"),
            Path(f"{self.path}-shm"),
            self.ledger.path,
        ):
            if path.exists() and not os.access(path, os.W_OK):
                raise StoreUnavailable(f"{path.name} is not writable")
        if not os.access(self.path.parent, os.W_OK):
            raise StoreUnavailable(f"the folder of {self.path.name} is not writable")
        if self.outage.since is not None:
            # The last write failed: only a write says whether the fault is gone, and
            # without this probe an unready server would get no traffic to find out. On a
            # new connection that never waits: behind the writer thread's work it would
            # wait out another process's lock, and a probe must answer at once; and a new
            # one sees a file made writable again, where an old one may stay read-only.
            # A real commit: a connection opened on a read-only file takes the write lock
            # all the same, and only a write is refused.
            try:
                with contextlib.closing(connect_for_loop(self.path)) as connection:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.execute(PROBE_SQL, (META_KEY,))
                    connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
            self.outage.ended()

    async def close(self) -> None:
        self._folds.stop()
        try:
            await self.fold_charges()
        except StoreUnavailable as exc:
            name = self.ledger.path.name
            logger.warning("charges left in %s, counted at the next start: %s", name, exc)
        self._write_thread.shutdown(wait=True)
        if self._write_connection is not None:
            self._write_connection.close()
        self._page_thread.shutdown(wait=True)
        self._page_connection.close()
        self.loop_connection.close()
        self.ledger.close()
