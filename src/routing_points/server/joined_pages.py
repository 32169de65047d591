"""The last whole page of each big operation, with where each record lies in it, so the
next version costs only its changed records instead of a read of every one.

Right after one of 60,000 points changes, the page must be served anew. Reading every
record again costs about 20 ms however it is done; instead the server asks the store for
the points stale or kept since the version of the page it holds (an index range, usually
a handful), checks that no point came or went (same count, every changed point known),
and splices the changed records into the old body: one copy of 10 MB. Anything else (a
point added or removed, many changes, another time zone) falls back to a whole read.

Why it is exact on every store and across workers: every write to a point nulls its
record and its `kept_version` (triggers, migration 0006), and a record is kept with the
operation's version at that moment, which is at least the version the change bumped to.
So a point changed since version V is, in any later snapshot, either stale or kept at a
version >= V; asking for exactly those misses none, whichever worker kept them.

A record lies at [start, end) of the body; records are found by `{"rp_id":"`, which
occurs in a page only where a record begins (inside a JSON string its quotes would be
escaped).
"""

from __future__ import annotations

import re
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass

from routing_points.store.reader import Changes

_RECORD_START = re.compile(rb'\{"rp_id":"(\d+)"')

# Whole pages of more records than this are held to be spliced; a smaller one is read whole
# in about what a splice costs.
HOLD_FROM_RECORDS = 2_000
# Changed points above this are read with the whole page instead: past a few thousand,
# building each one's bytes costs about what a whole read does.
MAX_SPLICED = 2_000
# Size changes kept aside before the offsets are brought up to date in one pass.
MAX_MOVES = 32
# Bodies held by this cache over every operation (they are usually the page cache's own).
MAX_HELD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class JoinedPage:
    version: int  # the operation's version of the snapshot the body shows
    timezone: str
    body: bytes  # the whole answer, envelope included
    ids: array[int]  # rp_ids, ascending
    # Where each record began when the layout was found, and since then, for each record
    # that changed size, (its index, by how much): the records after it moved that much.
    # Applied on reading, so a splice costs its changes, not a pass over 60,000 offsets.
    starts: array[int]
    moves: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, version: int, timezone: str, body: bytes) -> JoinedPage:
        """The layout of a page rendered whole (in a worker thread: 60,000 records take
        some 30 ms)."""
        data = body.index(b'"data":[') + len(b'"data":[')
        ids: array[int] = array("q")
        starts: array[int] = array("q")
        for found in _RECORD_START.finditer(body, data):
            starts.append(found.start())
            ids.append(int(found[1]))
        return cls(version, timezone, body, ids, starts)

    def start(self, index: int) -> int:
        return self.starts[index] + sum(by for moved, by in self.moves if moved < index)

    def end(self, index: int) -> int:
        """Where record `index` ends: the comma before the next, or `]}` after the last."""
        if index + 1 < len(self.starts):
            return self.start(index + 1) - 1
        return len(self.body) - 2

    def positions(self, changes: Changes) -> list[int] | None:
        """Where each changed point is, or None when the page cannot be spliced: a point
        came or went, or too many changed."""
        if changes.total != len(self.ids) or len(changes.points) > MAX_SPLICED:
            return None
        found: list[int] = []
        for row, _record in changes.points:
            index = bisect_left(self.ids, row[0])
            if index == len(self.ids) or self.ids[index] != row[0]:
                return None  # one came and another went
            found.append(index)
        return found

    def spliced(self, version: int, positions: list[int], records: list[bytes]) -> JoinedPage:
        """This page with the records at `positions` (ascending) replaced: one copy."""
        if not positions:
            return JoinedPage(version, self.timezone, self.body, self.ids, self.starts, self.moves)
        body = memoryview(self.body)
        pieces: list[bytes | memoryview] = []
        moves = list(self.moves)
        cursor = 0
        for index, record in zip(positions, records, strict=True):
            start, end = self.start(index), self.end(index)
            pieces += (body[cursor:start], record)
            if len(record) != end - start:
                moves.append((index, len(record) - (end - start)))
            cursor = end
        pieces.append(body[cursor:])
        page = JoinedPage(
            version, self.timezone, b"".join(pieces), self.ids, self.starts, tuple(moves)
        )
        return page.settled() if len(moves) > MAX_MOVES else page

    def settled(self) -> JoinedPage:
        """The same page with its moves applied to the offsets (one pass)."""
        starts: array[int] = self.starts[:0]
        done, shift = 0, 0
        for moved, by in sorted(self.moves):
            # Records up to `moved` (itself included) are shifted by the moves before it.
            starts.extend(at + shift for at in self.starts[done : moved + 1])
            done, shift = moved + 1, shift + by
        starts.extend(at + shift for at in self.starts[done:])
        return JoinedPage(self.version, self.timezone, self.body, self.ids, starts)


class JoinedPages:
    """The newest whole page of each operation, least recently used dropped past the bound."""

    def __init__(self, max_bytes: int = MAX_HELD_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[int, JoinedPage] = OrderedDict()
        self._lock = threading.Lock()  # layouts are stored from worker threads

    def get(self, operation_id: int) -> JoinedPage | None:
        with self._lock:
            page = self._pages.get(operation_id)
            if page is not None:
                self._pages.move_to_end(operation_id)
            return page

    def put(self, operation_id: int, page: JoinedPage) -> None:
        with self._lock:
            held = self._pages.get(operation_id)
            if held is not None and held.version > page.version:
                return  # a newer one landed first
            self._pages[operation_id] = page
            self._pages.move_to_end(operation_id)
            total = sum(len(held.body) for held in self._pages.values())
            while total > self.max_bytes and self._pages:
                _, dropped = self._pages.popitem(last=False)
                total -= len(dropped.body)
