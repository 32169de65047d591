"""The charge ledger: the embedded store's charges, durable the moment they are written.

A charge must be durable before its answer goes out: a server that dies (kill -9) must
never forget a consumption it answered. A SQLite commit gives that for about 50 µs of CPU
per turn of the event loop, and the request waits a turn for it: measured, a third of what
the limits cost on the contract's hot path. The ledger gives it with a 32-byte record
written into a shared memory-mapped file: the kernel's page cache holds the record as soon
as it is written, whatever becomes of the process. That is the promise of a SQLite commit
in WAL mode with synchronous=NORMAL, no more (neither outlives a power cut), and no less.

The charges are folded into `usage_counters` (at most every `FOLD_EVERY_S` under load, at
once when idle) from totals kept in memory, in one transaction that also moves the
ledger's mark in `meta` to the last record folded: a record is counted once, whenever the
process dies. On opening, the records a dead server left after the mark are taken back
as not yet counted, and the first fold counts them.

Layout: a header (magic, epoch, capacity), then a ring of `capacity` records

    seq | token_id | operation_id | day (YYYYMMDD) + cost << 32     (8-byte words)

A record is written fields first and its sequence number last (one aligned 8-byte store),
so a record cut short by the process's death carries a stale number and is never counted;
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
# (its folds failing: a store that cannot be written) refuses further charges (a 503).
CAPACITY = 65_536
# The most often a busy server folds: the ledger's records reach `usage_counters`, what
# other processes read, within this (plus the fold itself); an idle one folds at once.
FOLD_EVERY_S = 0.05
# After a fold failed (SQLite could not be written), the next is tried this much later.
FOLD_RETRY_S = 1.0
META_KEY = "charge_ledger"
# What a record may cost at most: a call costs 1; more is a damaged record.
MAX_COST = 1_000

_FOLD_SQL = """
INSERT INTO usage_counters (token_id, day, operation_id, count)
SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM tokens WHERE id = ?1)
ON CONFLICT (token_id, day) DO UPDATE SET count = usage_counters.count + excluded.count
"""
MARK_SQL = "SELECT value FROM meta WHERE key = ?"
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


# What a fold counts: (token_id, day, operation_id) -> the cost recorded.
Totals = dict[tuple[int, str, int], int]


class ChargeLedger:
    """One server's ledger: appended on the event loop, folded from what it keeps in memory.

    Live folds count the totals this process kept as it appended, never what the file
    says: damage done to the file while the server runs costs nothing until a crash. The
    file is read back only on opening, for what a dead server left."""

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
        self._pending: Totals = {}  # the records after `folded`, added up
        # A fold under way: the last record it counts, and its totals.
        self._taken: tuple[int, Totals] | None = None
        # Told of the records appended, to fold them in time (a server's; None alone).
        self.folds: FoldPlan | None = None

    def full(self) -> bool:
        return self.head - self.folded >= self.capacity

    def append(self, token_id: int, day: str, operation_id: int, cost: int) -> bool:
        """Record one charge, durable on return; False when the ledger is full. Every
        embedded call comes here: its fold is planned here too, not by a caller around it."""
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
        key = (token_id, day, operation_id)
        pending = self._pending
        pending[key] = pending.get(key, 0) + cost
        folds = self.folds
        if folds is not None and not folds.planned:
            folds.charged()
        return True

    def uncounted(self, operation_id: int, day: str, marked: int) -> dict[int, int]:
        """Per token, what the operation's day has recorded that a database whose mark is
        at `marked` does not count yet: the pending charges, and a fold's under way if
        it has not committed."""
        sources = [self._pending]
        if self._taken is not None and self._taken[0] > marked:
            sources.append(self._taken[1])
        found: dict[int, int] = {}
        for totals in sources:
            for (token_id, pending_day, pending_operation), cost in totals.items():
                if pending_operation == operation_id and pending_day == day:
                    found[token_id] = found.get(token_id, 0) + cost
        return found

    def take(self) -> tuple[int, Totals]:
        """What the next fold counts: the records up to the head, added up."""
        totals, self._pending = self._pending, {}
        self._taken = (self.head, totals)
        return self._taken

    def folded_up_to(self, upto: int) -> None:
        """The fold of what `take` gave has committed."""
        self._taken = None
        self.folded = upto

    def put_back(self, totals: Totals) -> None:
        """A fold that failed: its totals wait for the next one."""
        self._taken = None
        pending = self._pending
        for key, cost in totals.items():
            pending[key] = pending.get(key, 0) + cost

    def fold(self, connection: sqlite3.Connection, upto: int, totals: Totals) -> None:
        """Count `totals` (the records up to `upto`) in `usage_counters`, and move the mark.

        In the caller's write transaction: the counters and the mark move together, so a
        record is counted once whenever the process dies. Charges of a token deleted
        meanwhile are dropped with it, as its counters were."""
        mark = connection.execute(MARK_SQL, (META_KEY,)).fetchone()
        epoch, _folded = _parse_mark(None if mark is None else mark[0])
        if epoch != self.epoch:
            raise sqlite3.DatabaseError(f"{self.path.name} is not the one this database counts")
        connection.executemany(
            _FOLD_SQL,
            [
                (token_id, day, operation_id, cost)
                for (token_id, day, operation_id), cost in totals.items()
            ],
        )
        connection.execute(_SET_MARK_SQL, (META_KEY, f"{self.epoch}:{upto}"))

    def fold_alone(self, connection: sqlite3.Connection, upto: int, totals: Totals) -> None:
        """`fold` in a write transaction of its own."""
        connection.execute("BEGIN IMMEDIATE")
        self.fold(connection, upto, totals)
        connection.execute("COMMIT")

    def recover(self) -> tuple[int, int]:
        """Take every whole record after the mark still in the file as not yet counted (a
        dead server's). Return how many records between them were damaged, and are lost,
        and how many slots hold no record this ledger could have written (damage past the
        last whole record among them). A record cut short by its writer's death carries a
        stale number: it is neither."""
        words, capacity, folded = self._words, self.capacity, self.folded
        numbers = words[0::4].tolist()
        found = [
            (slot, seq)
            for slot, seq in enumerate(numbers)
            if folded < seq <= folded + capacity and seq % capacity == slot
        ]
        damaged_slots = sum(
            1
            for slot, seq in enumerate(numbers)
            if seq < 0 or seq > folded + capacity or (seq and seq % capacity != slot)
        )
        whole = 0
        for slot, _seq in found:
            token_id, operation_id, day_cost = words[slot * 4 + 1 : slot * 4 + 4].tolist()
            cost = day_cost >> 32
            if not 0 < cost <= MAX_COST:
                continue  # damaged: no call costs that
            key = (token_id, _day_text(day_cost & 0xFFFFFFFF), operation_id)
            self._pending[key] = self._pending.get(key, 0) + cost
            whole += 1
        self.head = max((seq for _slot, seq in found), default=folded)
        return self.head - folded - whole, damaged_slots

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
        # A fold is planned (or under way): a charge needs no other.
        self.planned = False
        self._started_at = 0.0
        self._stopped = False

    def charged(self) -> None:
        """A charge was recorded: fold it in time."""
        if not self.planned:
            self._plan(asyncio.get_running_loop())

    def stop(self) -> None:
        """No fold is started after this (the store folds what is left as it closes)."""
        self._stopped = True

    def _plan(self, loop: asyncio.AbstractEventLoop) -> None:
        self.planned = True
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
            self.planned = False
            if task.cancelled() or task.exception() is not None:
                # The store logged it as an outage: try again a second later.
                self._started_at = loop.time() + FOLD_RETRY_S - FOLD_EVERY_S
            if self._ledger.head > self._ledger.folded:
                self._plan(loop)

        task.add_done_callback(done)


def marked_up_to(mark: str | None) -> int:
    """The last record a database whose mark reads so counts."""
    return _parse_mark(mark)[1]


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
    try:
        with building.open("wb") as file:
            file.write(HEADER.pack(MAGIC, epoch, capacity).ljust(HEADER_BYTES, b"\0"))
            file.write(bytes(capacity * RECORD_BYTES))
            file.flush()
            os.fsync(file.fileno())
        os.replace(building, path)
    finally:
        building.unlink(missing_ok=True)  # a full disk leaves no half-made file behind
    return epoch


def _made_or_found(
    database: Path, connection: sqlite3.Connection, capacity: int
) -> tuple[Path, int, int, int]:
    """(path, epoch, capacity, mark) of the database's ledger: the one there if it belongs
    to the database, else a new one, marked in it (the one write opening may do)."""
    path = ledger_path(database)
    row = connection.execute(MARK_SQL, (META_KEY,)).fetchone()
    epoch, folded = _parse_mark(None if row is None else row[0])
    header = _read_header(path)
    if epoch is not None and header is not None and header[0] == epoch:
        return path, epoch, header[1], folded
    if epoch is not None:
        logger.warning(
            "%s is missing or belongs to another database: a new one is started "
            "(charges it held unfolded, if any, are not counted)",
            path.name,
        )
    epoch = _create(path, capacity)
    connection.execute(_SET_MARK_SQL, (META_KEY, f"{epoch}:0"))
    return path, epoch, capacity, 0


def ensure_ledger(database: Path, connection: sqlite3.Connection) -> None:
    """Make the database's ledger if it has none: what `serve` checks before it starts,
    where a fault is one line. Its records are read back only by the server, once."""
    _made_or_found(database, connection, CAPACITY)


def open_ledger(
    database: Path, connection: sqlite3.Connection, capacity: int = CAPACITY
) -> ChargeLedger:
    """The database's ledger, holding what a dead server left uncounted (folded by the
    first fold: opening writes nothing, so a locked or read-only database does not stop a
    start); a new one, marked in the database, when there is none that belongs to it.
    `capacity` is a new ledger's."""
    ledger = ChargeLedger(*_made_or_found(database, connection, capacity))
    lost, damaged_slots = ledger.recover()
    if lost:
        logger.warning("%s: %d damaged charge records are not counted", ledger.path.name, lost)
    elif damaged_slots:
        # Past the last whole record, or in place of every one: how many charges they
        # held, if any, cannot be known.
        logger.warning(
            "%s: %d records are damaged; charges they held, if any, are not counted",
            ledger.path.name,
            damaged_slots,
        )
    return ledger


def pending_charges(database: Path) -> int:
    """How many charges the ledger beside `database` holds that its counters do not count
    yet: what another process reading them misses right now (0 without a ledger)."""
    header = _read_header(ledger_path(database))
    if header is None:
        return 0
    epoch, capacity = header
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        row = conn.execute(MARK_SQL, (META_KEY,)).fetchone()
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
