"""The charge ledger: the embedded store's charges, durable the moment they are written.

A charge must be durable before its answer goes out: a server that dies (kill -9) must
never forget a consumption it answered. A SQLite commit gives that for about 50 µs of CPU
per turn of the event loop, and the request waits a turn for it: measured, a third of what
the limits cost on the contract's hot path. The ledger gives it with a 32-byte record
written into a shared memory-mapped file: the kernel's page cache holds the record as soon
as it is written, whatever becomes of the process. That is the promise of a SQLite commit
in WAL mode with synchronous=NORMAL, no more (neither outlives a power cut), and no less.

The writer thread folds the records into `usage_counters` (at most every `FOLD_EVERY_S`
under load, at once when idle), in one transaction that also moves the ledger's mark in
`meta` to the last record folded: a record is counted once, whenever the process dies.
On opening, whatever a dead server left unfolded is folded before anything is served.

Layout: a header (magic, epoch, capacity), then a ring of `capacity` records

    seq | token_id | operation_id | day (YYYYMMDD) + cost << 32     (8-byte words)

A record is written fields first and its sequence number last (one aligned 8-byte store),
so a record cut short by the process's death carries a stale number and is never folded;
its answer never went out. The epoch ties the file to its database: a ledger found beside
a database it was not made for (the database replaced or restored) is set aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import secrets
import sqlite3
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

logger = logging.getLogger("routing_points.store")

MAGIC = b"RPLEDGR1"
HEADER = struct.Struct("<8sQI")  # magic, epoch, capacity
HEADER_BYTES = 64
# seq, token_id, operation_id, day | cost << 32: four native 8-byte words (the file never
# leaves its machine).
RECORD = struct.Struct("=qqqq")
SEQ = struct.Struct("=q")
RECORD_BYTES = RECORD.size
# Charges the ledger holds unfolded: about 3 s of the hot path's top rate. A full ledger
# (its folds failing: a store that cannot be written) sends charges back to SQLite commits.
CAPACITY = 65_536
# The most often a busy server folds: the ledger's records reach `usage_counters`, what
# other processes read, within this (plus the fold itself); an idle one folds at once.
FOLD_EVERY_S = 0.05
# After a fold failed (SQLite could not be written), the next is tried this much later.
FOLD_RETRY_S = 1.0
META_KEY = "charge_ledger"

_FOLD_SQL = """
INSERT INTO usage_counters (token_id, day, operation_id, count)
SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM tokens WHERE id = ?1)
ON CONFLICT (token_id, day) DO UPDATE SET count = usage_counters.count + excluded.count
"""
_MARK_SQL = "SELECT value FROM meta WHERE key = ?"
_SET_MARK_SQL = """
INSERT INTO meta (key, value) VALUES (?1, ?2)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""


def ledger_path(database: Path) -> Path:
    """Beside the database, named like SQLite's own `-wal` and `-shm`."""
    return database.with_name(database.name + "-charges")


def _day_number(day: str) -> int:
    return int(day[:4]) * 10_000 + int(day[5:7]) * 100 + int(day[8:10])


def _day_text(number: int) -> str:
    return f"{number // 10_000:04d}-{number // 100 % 100:02d}-{number % 100:02d}"


class ChargeLedger:
    """One server's ledger: appended on the event loop, folded on the writer thread."""

    def __init__(self, path: Path, epoch: int, capacity: int, folded: int) -> None:
        self.path = path
        self.epoch = epoch
        self.capacity = capacity
        # The last record written, and the last one the database has counted.
        self.head = folded
        self.folded = folded
        with path.open("r+b") as file:
            self._map = mmap.mmap(file.fileno(), _file_bytes(capacity))
        # The records as 8-byte words: a store each, the cheapest write Python has.
        self._words = memoryview(self._map)[HEADER_BYTES:].cast("q")
        self._days: dict[str, int] = {}

    def append(self, token_id: int, day: str, operation_id: int, cost: int) -> bool:
        """Record one charge, durable on return; False when the ledger is full."""
        seq = self.head + 1
        if seq - self.folded > self.capacity:
            return False
        number = self._days.get(day)
        if number is None:
            if len(self._days) > 64:
                self._days.clear()
            number = self._days[day] = _day_number(day)
        words, at = self._words, (seq % self.capacity) * 4
        words[at + 1] = token_id
        words[at + 2] = operation_id
        words[at + 3] = number | cost << 32
        words[at] = seq  # last: the record is whole once its number is
        self.head = seq
        return True

    def tally(self, after: int, upto: int) -> tuple[int, Counter[tuple[int, int, int]]]:
        """The records after `after`, up to `upto`, as long as they follow on: the last
        one's number, and how many there are of each (token_id, operation_id, day | cost <<
        32). Read a column at a time (a strided view), not a record at a time: a busy
        server folds a thousand records per fold."""
        words, capacity = self._words, self.capacity
        counts: Counter[tuple[int, int, int]] = Counter()
        last = after
        while last < upto:
            start = (last + 1) % capacity
            length = min(upto - last, capacity - start)  # to the end of the ring at most
            base, end = start * 4, (start + length) * 4
            numbers = words[base:end:4].tolist()
            whole = length
            if numbers[-1] != last + length:
                # Cut short by the death of the process that wrote it: records are written
                # in order, so every one before the first out of place is whole.
                whole = next(i for i, seq in enumerate(numbers) if seq != last + 1 + i)
                end = (start + whole) * 4
            columns = (words[base + column : end : 4].tolist() for column in (1, 2, 3))
            counts.update(zip(*columns, strict=True))
            last += whole
            if whole < length:
                break
        return last, counts

    def fold(self, connection: sqlite3.Connection, upto: int) -> int:
        """Count the records up to `upto` in `usage_counters`, once; return the new mark.

        In the caller's write transaction, which also moves the mark: read inside it, so two
        folds (or a fold and a recovery) never count a record twice. Charges of a token
        deleted meanwhile are dropped with it, as its counters were."""
        mark = connection.execute(_MARK_SQL, (META_KEY,)).fetchone()
        epoch, folded = _parse_mark(None if mark is None else mark[0])
        if epoch != self.epoch:
            raise sqlite3.DatabaseError(f"{self.path.name} is not the one this database counts")
        last, counts = self.tally(folded, upto)
        if last == folded:
            return folded
        totals: dict[tuple[int, int], list[int]] = {}
        for (token_id, operation_id, day_cost), records in counts.items():
            total = totals.setdefault((token_id, day_cost & 0xFFFFFFFF), [operation_id, 0])
            total[1] += records * (day_cost >> 32)
        connection.executemany(
            _FOLD_SQL,
            [
                (token_id, _day_text(day), operation_id, cost)
                for (token_id, day), (operation_id, cost) in totals.items()
            ],
        )
        connection.execute(_SET_MARK_SQL, (META_KEY, f"{self.epoch}:{last}"))
        return last

    def fold_alone(self, connection: sqlite3.Connection, upto: int) -> int:
        """`fold` in a write transaction of its own."""
        connection.execute("BEGIN IMMEDIATE")
        folded = self.fold(connection, upto)
        connection.execute("COMMIT")
        return folded

    def close(self) -> None:
        self._words.release()
        self._map.close()


class FoldPlan:
    """When the ledger is folded: at once when the server is idle, at most every
    `FOLD_EVERY_S` when it is busy (a fold per charge would be a commit per charge again),
    and a second after a fold that failed."""

    def __init__(self, ledger: ChargeLedger, fold: Callable[[], Awaitable[None]]) -> None:
        self._ledger = ledger
        self._fold = fold
        self._planned = False
        self._started_at = 0.0
        self._stopped = False

    def charged(self) -> None:
        """A charge was recorded: fold it in time."""
        if not self._planned:
            self._plan(asyncio.get_running_loop())

    def stop(self) -> None:
        """No fold is started after this (the store folds what is left as it closes)."""
        self._stopped = True

    def _plan(self, loop: asyncio.AbstractEventLoop) -> None:
        self._planned = True
        delay = self._started_at + FOLD_EVERY_S - loop.time()
        if delay > 0:
            loop.call_later(delay, self._start, loop)
        else:
            loop.call_soon(self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stopped:
            return
        self._started_at = loop.time()
        task = asyncio.ensure_future(self._fold())

        def done(task: asyncio.Future[None]) -> None:
            self._planned = False
            if task.cancelled() or task.exception() is not None:
                # The store logged it as an outage: try again a second later.
                self._started_at = loop.time() + FOLD_RETRY_S - FOLD_EVERY_S
            if self._ledger.head > self._ledger.folded:
                self._plan(loop)

        task.add_done_callback(done)


def _parse_mark(value: str | None) -> tuple[int | None, int]:
    if value is None:
        return None, 0
    epoch, _, folded = value.partition(":")
    try:
        return int(epoch), int(folded)
    except ValueError:
        return None, 0


def _read_header(path: Path) -> tuple[int, int] | None:
    """(epoch, capacity) of a whole ledger file; None for anything else."""
    try:
        with path.open("rb") as file:
            magic, epoch, capacity = HEADER.unpack(file.read(HEADER.size))
        whole = capacity > 0 and path.stat().st_size >= _file_bytes(capacity)
    except (OSError, struct.error):
        return None
    return (int(epoch), int(capacity)) if magic == MAGIC and whole else None


def _file_bytes(capacity: int) -> int:
    return HEADER_BYTES + capacity * RECORD_BYTES


def _create(path: Path, capacity: int) -> int:
    """A new, empty ledger with a new epoch, in place of any other: its blocks written
    (not a sparse file), so a full disk can never fault a write into the mapping."""
    epoch = secrets.randbits(63)
    building = path.with_name(path.name + ".new")
    with building.open("wb") as file:
        file.write(HEADER.pack(MAGIC, epoch, capacity).ljust(HEADER_BYTES, b"\0"))
        file.write(bytes(capacity * RECORD_BYTES))
        file.flush()
        os.fsync(file.fileno())
    os.replace(building, path)
    return epoch


def open_ledger(
    database: Path, connection: sqlite3.Connection, capacity: int = CAPACITY
) -> ChargeLedger:
    """The database's ledger, with whatever a dead server left in it counted first;
    `capacity` is a new ledger's."""
    path = ledger_path(database)
    row = connection.execute(_MARK_SQL, (META_KEY,)).fetchone()
    epoch, folded = _parse_mark(None if row is None else row[0])
    header = _read_header(path)
    if epoch is None or header is None or header[0] != epoch:
        if epoch is not None:
            logger.warning(
                "%s is missing or belongs to another database: a new one is started "
                "(charges it held unfolded, if any, are not counted)",
                path.name,
            )
        epoch = _create(path, capacity)
        connection.execute(_SET_MARK_SQL, (META_KEY, f"{epoch}:0"))
        return ChargeLedger(path, epoch, capacity, 0)
    ledger = ChargeLedger(path, epoch, header[1], folded)
    try:
        ledger.head = ledger.folded = ledger.fold_alone(connection, folded + ledger.capacity)
    except BaseException:
        ledger.close()
        raise
    return ledger


def pending_charges(database: Path) -> int:
    """How many charges the ledger beside `database` holds that its counters do not count
    yet: what another process reading them misses right now (0 without a ledger)."""
    header = _read_header(ledger_path(database))
    if header is None:
        return 0
    epoch, capacity = header
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute(_MARK_SQL, (META_KEY,)).fetchone()
    marked, folded = _parse_mark(None if row is None else row[0])
    if marked != epoch:
        return 0
    pending = 0
    with ledger_path(database).open("rb") as file:
        for seq in range(folded + 1, folded + capacity + 1):
            file.seek(HEADER_BYTES + (seq % capacity) * RECORD_BYTES)
            if SEQ.unpack(file.read(SEQ.size))[0] != seq:
                break
            pending += 1
    return pending
