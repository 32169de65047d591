"""Each record's JSON, kept with the row it was made from, so a new version of a big page
re-renders only the records that changed.

Right after a change to one routing point of 60,000, the page must be built again; making
60,000 dicts and encoding them is most of that cost, and all but one come out the same. The
cache keeps, per operation and time zone, each record's bytes next to its row tuple: a row
equal to the one cached reuses its bytes, any other is encoded again. The rows are still
read from the store on every render, so nothing can be served stale: a record is reused
only when every column it was made from is the same.

The bytes of a page are exactly those of `orjson.dumps` of the records' list: the records
joined by commas inside brackets. Memory is bounded by a count of records over every
operation, least recently rendered evicted first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import orjson

from routing_points.server.render import LocalTimes, record_of
from routing_points.store.reader import PointRow

# About 250 bytes a record (row and bytes): 200,000 records are some 50 MB at most.
MAX_CACHED_RECORDS = 200_000

Encoded = dict[int, tuple[PointRow, bytes]]


class RecordCache:
    def __init__(self, max_records: int = MAX_CACHED_RECORDS) -> None:
        self.max_records = max_records
        self._operations: OrderedDict[tuple[int, str], Encoded] = OrderedDict()
        # Renders run in worker threads: one may evict while another adds.
        self._lock = threading.Lock()

    def records(self, operation_id: int, timezone: str) -> Encoded:
        key = (operation_id, timezone)
        with self._lock:
            encoded = self._operations.get(key)
            if encoded is None:
                encoded = self._operations[key] = {}
            else:
                self._operations.move_to_end(key)
            return encoded

    def data(self, rows: list[PointRow], encoded: Encoded, local_time: LocalTimes) -> bytes:
        """The JSON array of the rows' records, reusing every one whose row is unchanged."""
        parts: list[bytes] = []
        append = parts.append
        get = encoded.get
        for row in rows:
            hit = get(row[0])
            if hit is not None and hit[0] == row:
                append(hit[1])
                continue
            row = tuple(row)  # type: ignore[assignment]  # asyncpg's Record, kept as a tuple
            # A copy of exactly its size: orjson's own result keeps a 4 KB buffer, and
            # 60,000 of them held 250 MB.
            record = memoryview(orjson.dumps(record_of(row, local_time))).tobytes()
            encoded[row[0]] = (row, record)
            append(record)
        self._trim()
        return b"[" + b",".join(parts) + b"]"

    def _trim(self) -> None:
        with self._lock:
            total = sum(len(encoded) for encoded in self._operations.values())
            while total > self.max_records and len(self._operations) > 1:
                _, evicted = self._operations.popitem(last=False)
                total -= len(evicted)
            if total > self.max_records:  # one operation alone over the bound: start over
                for encoded in self._operations.values():
                    encoded.clear()
