"""Limits of one server process: slots in memory, daily counters made durable in the store.

Admission is atomic without a lock: every check, and the reservation in memory, happen
synchronously on the event loop. The charge is durable before `admit` returns: recorded
at once when the store keeps a ledger (SQLite's, store/ledger.py: no commit, no await),
else committed through in the one await. If that write fails, the reservation is rolled
back and the call refused, so a restart (or a crash) never forgets a consumption and never
sees one that did not happen. Counters are read from the store once per operation and
day, then kept in memory; that makes this backend right for one process only (the CLI
refuses more without Redis).
"""

from __future__ import annotations

from typing import Protocol

from routing_points.limits.backend import AdmitRequest, AdmitResult, Outcome, Taken

# What release() is given back: one process holds every slot, so nothing to name.
LEASE = "local"


class CounterStore(Protocol):
    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]: ...

    async def charge(self, token_id: int, day: str, operation_id: int, cost: int) -> None: ...


class ChargeRecorder(Protocol):
    """A store that can make a charge durable without waiting (SQLite's ledger): False
    when it cannot right now, and the charge is then committed the usual way."""

    def __call__(self, token_id: int, day: str, operation_id: int, cost: int) -> bool: ...


class _OperationDay:
    """The counters of one operation for its current local day."""

    __slots__ = ("day", "operation_used", "token_used")

    def __init__(self, day: str, token_counts: list[tuple[int, int]]) -> None:
        self.day = day
        self.token_used: dict[int, int] = dict(token_counts)
        self.operation_used = sum(self.token_used.values())


class LocalLimits:
    def __init__(self, store: CounterStore) -> None:
        self._store = store
        self._in_flight: dict[int, int] = {}
        self._days: dict[int, _OperationDay] = {}
        self._last_consumption: dict[str, float] = {}
        self._record: ChargeRecorder | None = getattr(store, "record_charge", None)

    async def _day(self, operation_id: int, day: str) -> _OperationDay:
        current = self._days.get(operation_id)
        if current is not None and current.day == day:
            return current
        counts = await self._store.load_counters(operation_id, day)
        # Another request may have loaded the same day meanwhile: keep its reservations.
        current = self._days.get(operation_id)
        if current is None or current.day != day:
            current = self._days[operation_id] = _OperationDay(day, counts)
        return current

    async def admit(self, request: AdmitRequest) -> AdmitResult:
        counters = self._days.get(request.operation_id)
        if counters is None or counters.day != request.day:
            counters = await self._day(request.operation_id, request.day)
        result = self._reserve(counters, request)
        if result.lease is not None and request.cost and not self._recorded(request):
            await self._commit(counters, request)
        return result

    def admit_now(self, request: AdmitRequest) -> Taken | None:
        """Admit at once a call that nothing refuses or holds up: what it took. None, with
        nothing taken, for any other: the day's counters to load, the charge to commit
        through the store (the ledger full), or a refusal; `admit` decides those.

        Every embedded call comes here, so it is one function: its tests for admission
        are `_reserve`'s, and the charge is recorded before anything is taken in memory
        (nothing runs in between), so a ledger that cannot take it leaves nothing to undo.
        Written out, it costs half what the same steps did as calls and a result object."""
        counters = self._days.get(request.operation_id)
        token_id = request.token_id
        in_flight = self._in_flight.get(token_id, 0)
        if counters is None or counters.day != request.day or in_flight >= request.max_in_flight:
            return None
        token_used = counters.token_used.get(token_id, 0)
        operation_used = counters.operation_used
        cost = request.cost
        if cost:
            token_used += cost
            operation_used += cost
            token_limit = request.token_limit
            if operation_used > request.operation_limit or (
                token_limit is not None and token_used > token_limit
            ):
                return None
            interval_key = request.interval_key
            if interval_key is not None:
                last = self._last_consumption.get(interval_key)
                if last is not None and request.now - last < request.min_interval_s:
                    return None
            record = self._record
            if record is None or not record(token_id, request.day, request.operation_id, cost):
                return None
            if interval_key is not None:
                self._last_consumption[interval_key] = request.now
            counters.token_used[token_id] = token_used
            counters.operation_used = operation_used
        self._in_flight[token_id] = in_flight + 1
        return token_used, operation_used, LEASE

    def _reserve(self, counters: _OperationDay, request: AdmitRequest) -> AdmitResult:
        """Decide, and for an admitted call take its slot and its charge in memory."""
        token_id = request.token_id
        token_used = counters.token_used.get(token_id, 0)
        operation_used = counters.operation_used
        in_flight = self._in_flight.get(token_id, 0)
        if in_flight >= request.max_in_flight:
            return AdmitResult(Outcome.CONCURRENCY, token_used, operation_used)
        cost = request.cost
        if cost:
            interval_key = request.interval_key
            if interval_key is not None:
                last = self._last_consumption.get(interval_key)
                if last is not None and request.now - last < request.min_interval_s:
                    wait = request.min_interval_s - (request.now - last)
                    return AdmitResult(
                        Outcome.INTERVAL, token_used, operation_used, retry_after_s=wait
                    )
            token_limit = request.token_limit
            if (
                token_limit is not None and token_used + cost > token_limit
            ) or operation_used + cost > request.operation_limit:
                return AdmitResult(Outcome.BUDGET, token_used, operation_used)
            counters.token_used[token_id] = token_used = token_used + cost
            counters.operation_used = operation_used = operation_used + cost
        self._in_flight[token_id] = in_flight + 1
        return AdmitResult(Outcome.ADMITTED, token_used, operation_used, LEASE)

    def _recorded(self, request: AdmitRequest) -> bool:
        """Whether the store made the reserved charge durable at once (its ledger)."""
        record = self._record
        if record is None or not record(
            request.token_id, request.day, request.operation_id, request.cost
        ):
            return False
        if request.interval_key is not None:
            self._last_consumption[request.interval_key] = request.now
        return True

    def _undo(self, counters: _OperationDay, request: AdmitRequest) -> None:
        counters.token_used[request.token_id] -= request.cost
        counters.operation_used -= request.cost
        self.release_now(request.token_id)

    async def _commit(self, counters: _OperationDay, request: AdmitRequest) -> None:
        """Commit a reserved charge through the store; undo the reservation if it fails."""
        token_id, cost, interval_key = request.token_id, request.cost, request.interval_key
        # Reserved before the await, like the counters: a second call arriving while
        # this charge commits must see this consumption's time.
        previous = None
        if interval_key is not None:
            previous = self._last_consumption.get(interval_key)
            self._last_consumption[interval_key] = request.now
        try:
            await self._store.charge(token_id, request.day, request.operation_id, cost)
        except BaseException:
            if interval_key is not None:
                if previous is None:
                    self._last_consumption.pop(interval_key, None)
                else:
                    self._last_consumption[interval_key] = previous
            self._undo(counters, request)
            raise

    async def release(self, token_id: int, lease: str) -> None:
        self.release_now(token_id)

    def release_now(self, token_id: int) -> None:
        """Release without awaiting: memory is all there is to update."""
        in_flight = self._in_flight
        remaining = in_flight[token_id] - 1
        if remaining:
            in_flight[token_id] = remaining
        else:
            del in_flight[token_id]

    def in_flight(self, token_id: int) -> int:
        return self._in_flight.get(token_id, 0)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
