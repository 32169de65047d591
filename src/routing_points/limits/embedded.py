"""Limits of one server process: slots in memory, daily counters written through to SQLite.

Everything in `admit` is synchronous, so on the event loop it is atomic by construction: no
other request runs between the check and the charge. Each charge is one SQLite upsert,
committed before the request proceeds, so a restart (or a crash) never forgets a
consumption. Counters are read from the file once per operation and day, then kept in
memory. One server process owns a SQLite file (the CLI enforces it with a lock), which is
what makes the memory copy authoritative.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from routing_points.limits.backend import (
    AdmitRequest,
    AdmitResult,
    BackendUnavailable,
    Outcome,
    Usage,
)

_CHARGE_SQL = """
INSERT INTO usage_counters (token_id, day, operation_id, count) VALUES (?, ?, ?, ?)
ON CONFLICT (token_id, day) DO UPDATE SET count = count + excluded.count
"""
_LOAD_SQL = "SELECT token_id, count FROM usage_counters WHERE operation_id = ? AND day = ?"


class _OperationDay:
    """The counters of one operation for its current local day."""

    __slots__ = ("day", "operation_used", "token_used")

    def __init__(self, day: str, token_counts: list[tuple[int, int]]) -> None:
        self.day = day
        self.token_used: dict[int, int] = dict(token_counts)
        self.operation_used = sum(self.token_used.values())


class EmbeddedLimits:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._in_flight: defaultdict[int, int] = defaultdict(int)
        self._days: dict[int, _OperationDay] = {}
        self._last_consumption: dict[str, float] = {}

    def _day(self, operation_id: int, day: str) -> _OperationDay:
        current = self._days.get(operation_id)
        if current is None or current.day != day:
            try:
                counts = self._connection.execute(_LOAD_SQL, (operation_id, day)).fetchall()
            except sqlite3.Error as exc:
                raise BackendUnavailable(str(exc)) from exc
            current = self._days[operation_id] = _OperationDay(day, counts)
        return current

    async def admit(self, request: AdmitRequest) -> AdmitResult:
        counters = self._day(request.operation_id, request.day)
        token_used = counters.token_used.get(request.token_id, 0)
        operation_used = counters.operation_used
        if self._in_flight[request.token_id] >= request.max_in_flight:
            return AdmitResult(Outcome.CONCURRENCY, token_used, operation_used)
        if request.cost:
            if request.interval_key is not None:
                last = self._last_consumption.get(request.interval_key)
                if last is not None and request.now - last < request.min_interval_s:
                    wait = request.min_interval_s - (request.now - last)
                    return AdmitResult(
                        Outcome.INTERVAL, token_used, operation_used, retry_after_s=wait
                    )
            over_token = (
                request.token_limit is not None and token_used + request.cost > request.token_limit
            )
            if over_token or operation_used + request.cost > request.operation_limit:
                return AdmitResult(Outcome.BUDGET, token_used, operation_used)
            self._charge(request)
            token_used += request.cost
            operation_used += request.cost
            counters.token_used[request.token_id] = token_used
            counters.operation_used = operation_used
            if request.interval_key is not None:
                self._last_consumption[request.interval_key] = request.now
        self._in_flight[request.token_id] += 1
        return AdmitResult(Outcome.ADMITTED, token_used, operation_used, lease="local")

    def _charge(self, request: AdmitRequest) -> None:
        try:
            self._connection.execute(
                _CHARGE_SQL, (request.token_id, request.day, request.operation_id, request.cost)
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(str(exc)) from exc

    async def release(self, token_id: int, lease: str) -> None:
        remaining = self._in_flight[token_id] - 1
        if remaining > 0:
            self._in_flight[token_id] = remaining
        else:
            del self._in_flight[token_id]

    async def usage(self, operation_id: int, token_id: int, day: str) -> Usage:
        counters = self._day(operation_id, day)
        return Usage(counters.token_used.get(token_id, 0), counters.operation_used)

    def in_flight(self, token_id: int) -> int:
        return self._in_flight.get(token_id, 0)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
