"""What the contract demands of every consumption (L2, L8, L9), over any backend.

The policy computes the day and the limits that apply to a principal, asks the backend to
admit in one atomic step, and returns its decision: a `Ticket` (admitted, with the day's
counters) or a `Refusal` (its reason, its counters and when to retry). It decides and
knows nothing of HTTP: the server turns a decision into the contract's envelope and its
headers (server/ratelimit.py, server/admission.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from routing_points.clock import Clock
from routing_points.limits.backend import (
    AdmitRequest,
    AdmitResult,
    BackendUnavailable,
    LimitBackend,
    Outcome,
    Taken,
)
from routing_points.limits.calendar import QuotaCalendar
from routing_points.settings import Settings
from routing_points.store.reader import Principal

logger = logging.getLogger("routing_points.limits")
# The day's counters outlive the local midnight by this much (seconds): a call admitted just
# before it still finds them when its charge is written.
DAY_COUNTERS_MARGIN_S = 3600
# Tokens whose admission facts are kept prepared (`_Prepared`); past it they are all dropped
# and prepared again as they call, like the store's cache of principals.
PREPARED_MAX = 4096
# A call refused before admission because its operation's allow-list excludes its address.
ADDRESS_REFUSAL = "address"
# The refusals tallied per operation and day (`refused`), as the console lists them.
TALLIED_REFUSALS = (
    Outcome.CONCURRENCY.value,
    Outcome.BUDGET.value,
    Outcome.INTERVAL.value,
    ADDRESS_REFUSAL,
)


@dataclass(slots=True)
class Usage:
    """The day's counters and limits a decision was taken on: what a client is told."""

    operation_limit: int
    token_limit: int
    # The token's own daily limit, when it has one (a second budget to report).
    own_limit: int | None
    token_used: int
    operation_used: int
    # Seconds to the operation's local midnight, when the counters start again.
    reset_s: int
    # False when no counters were consulted: limits off, or a failed-open backend.
    counted: bool = field(default=True, kw_only=True)
    degraded: bool = field(default=False, kw_only=True)


@dataclass(slots=True)
class Ticket(Usage):
    """An admitted call: the usage it was admitted on, and what it holds. The usage is
    the ticket itself rather than an object of its own: one object less on every call."""

    principal: Principal
    lease: str | None
    cost: int
    # Filled by the server from the usage: the budget headers every answer carries.
    headers: list[tuple[bytes, bytes]] = field(default_factory=list, kw_only=True)


class Reason(Enum):
    """Why a call was refused; the server words each one."""

    CONCURRENCY = "concurrency"
    BUDGET = "budget"
    INTERVAL = "interval"
    # A slot held by a process that died is being reclaimed: not the client's doing.
    RECLAIMING = "reclaiming"
    # Redis lost the running calls' slots; they are being put back: not the client's doing.
    RECOVERING = "recovering"
    # The limits' backend cannot be reached (and the policy is to fail closed).
    UNAVAILABLE = "unavailable"


@dataclass(slots=True)
class Refusal:
    """A refused call: it costs nothing."""

    reason: Reason
    usage: Usage | None
    retry_after_s: int | None = None
    # The limit that refused, for the message: simultaneous requests, or interval seconds.
    limit: float = 0


Decision = Ticket | Refusal


@dataclass(slots=True)
class _Prepared:
    """A token's admission facts for one api and local day, kept from call to call: only
    the cost and the time change, so the synchronous path sets them on the same request
    instead of building one per call (the request's dozen fields were a fifth of what the
    limits cost). Valid while its principal is the one the store hands out."""

    principal: Principal
    api: str
    # The local day's bounds (`QuotaDay`'s), as epoch seconds.
    starts_at: float
    ends_at: float
    request: AdmitRequest
    # The most this token may use today (`token_limit_of`), as the call is told.
    token_limit: int


def token_limit_of(operation_limit: int, own_limit: int | None) -> int:
    """The most one token may use today: its own daily limit, within the operation's."""
    return operation_limit if own_limit is None else min(own_limit, operation_limit)


class LimitPolicy:
    def __init__(self, settings: Settings, backend: LimitBackend, clock: Clock) -> None:
        self.settings = settings
        self.backend = backend
        self.clock = clock
        self.calendar = QuotaCalendar()
        self._lease_s = settings.slot_lease_s
        # Read on every call: kept here, not looked up in the settings each time.
        self._enabled = settings.limits_enabled
        self._calls_per_license = settings.daily_calls_per_license
        self._min_interval_s = settings.min_poll_interval_s
        self._max_in_flight = settings.max_in_flight_per_token
        # Backends whose release needs no I/O offer it synchronously: a coroutine less.
        self._release_now: Callable[[int], None] | None = getattr(backend, "release_now", None)
        # And admission, when the backend can decide without waiting.
        self._admit_now: Callable[[AdmitRequest], Taken | None] | None = getattr(
            backend, "admit_now", None
        )
        # Told of every refusal (operation id, local day, kind), to count them.
        self.on_refusal: Callable[[int, str, str], None] | None = None
        self._prepared: dict[int, _Prepared] = {}

    def refused(self, principal: Principal, kind: str, day: str | None = None) -> None:
        if self.on_refusal is not None:
            if day is None:
                day = self.calendar.day(principal.timezone, self.clock()).day
            self.on_refusal(principal.operation_id, day, kind)

    async def admit(self, principal: Principal, api: str, cost: int) -> Decision:
        """Admit one call, or say why not. A refusal costs nothing."""
        if not self._enabled:
            return self._unlimited(principal, cost)
        request, reset = self._request(principal, api, cost)
        try:
            result = await self.backend.admit(request)
        except BackendUnavailable:
            if not self.settings.redis_fail_open:
                return Refusal(Reason.UNAVAILABLE, None)
            # The backend logs the outage once when it starts and once when it ends.
            return self._unlimited(principal, cost, degraded=True)
        return self._decision(principal, request, reset, result)

    def admit_now(self, principal: Principal, api: str, cost: int) -> Ticket | None:
        """`admit` without a coroutine, for a call the backend admits at once (the
        embedded one, its day's counters loaded, nothing refused): None for any other,
        with nothing taken; `admit` then decides it."""
        admit_now = self._admit_now
        if admit_now is None:
            return None
        if not self._enabled:
            return self._unlimited(principal, cost)
        now = self.clock()
        prepared = self._prepared.get(principal.token_id)
        if (
            prepared is None
            or prepared.principal is not principal
            or prepared.api != api
            or not prepared.starts_at <= now < prepared.ends_at
        ):
            prepared = self._prepare(principal, api, now)
        # `QuotaDay.seconds_left`, written out: a call less on every call.
        reset = int(prepared.ends_at - now + 0.999) or 1
        # The same request as the token's previous call: the backend decides on it at once
        # and keeps none of it, so nothing can see it change.
        request = prepared.request
        request.cost = cost
        request.now = now
        request.day_ttl_s = reset + DAY_COUNTERS_MARGIN_S
        taken = admit_now(request)
        if taken is None:
            return None
        token_used, operation_used, lease = taken
        return Ticket(
            request.operation_limit,
            prepared.token_limit,
            request.token_limit,
            token_used,
            operation_used,
            reset,
            principal,
            lease,
            cost,
        )

    def _prepare(self, principal: Principal, api: str, now: float) -> _Prepared:
        prepared = self._prepared
        if len(prepared) >= PREPARED_MAX:
            prepared.clear()
        quota_day = self.calendar.day(principal.timezone, now)
        request = self._new_request(principal, api, 0, now, quota_day.day, 0)  # set per call
        token_limit = token_limit_of(request.operation_limit, request.token_limit)
        entry = prepared[principal.token_id] = _Prepared(
            principal, api, quota_day.starts_at, quota_day.ends_at, request, token_limit
        )
        return entry

    def _unlimited(self, principal: Principal, cost: int, *, degraded: bool = False) -> Ticket:
        """Admitted without counting: limits off, or a limits service failed open."""
        operation_limit = principal.licenses * self._calls_per_license
        token_limit = token_limit_of(operation_limit, principal.daily_limit)
        # Nothing counted: no used figures and no second budget to report.
        return Ticket(
            operation_limit,
            token_limit,
            None,
            0,
            0,
            0,
            principal,
            None,
            cost,
            counted=False,
            degraded=degraded,
        )

    def _request(self, principal: Principal, api: str, cost: int) -> tuple[AdmitRequest, int]:
        """What the backend decides on, and the seconds left in the operation's day."""
        now = self.clock()
        quota_day = self.calendar.day(principal.timezone, now)
        reset = quota_day.seconds_left(now)
        return self._new_request(principal, api, cost, now, quota_day.day, reset), reset

    def _new_request(
        self, principal: Principal, api: str, cost: int, now: float, day: str, reset: int
    ) -> AdmitRequest:
        interval = self._min_interval_s
        return AdmitRequest(
            token_id=principal.token_id,
            operation_id=principal.operation_id,
            day=day,
            cost=cost,
            operation_limit=principal.licenses * self._calls_per_license,
            token_limit=principal.daily_limit,
            max_in_flight=self._max_in_flight,
            lease_s=self._lease_s,
            interval_key=f"{principal.token_id}:{api}" if interval > 0 else None,
            min_interval_s=interval,
            now=now,
            day_ttl_s=reset + DAY_COUNTERS_MARGIN_S,
        )

    def _decision(
        self, principal: Principal, request: AdmitRequest, reset: int, result: AdmitResult
    ) -> Decision:
        """The backend's result as the call is told it: the operation's daily budget, and
        the most this token may use of it today."""
        outcome = result.outcome
        if outcome is Outcome.RECOVERING and self.settings.redis_fail_open:
            # The limits cannot be known until the running calls' slots are back: failing
            # open serves without them meanwhile, as it does while Redis is away.
            return self._unlimited(principal, request.cost, degraded=True)
        operation_limit, own = request.operation_limit, request.token_limit
        token_limit = token_limit_of(operation_limit, own)
        token_used, operation_used = result.token_used, result.operation_used
        if outcome is Outcome.ADMITTED:
            return Ticket(
                operation_limit,
                token_limit,
                own,
                token_used,
                operation_used,
                reset,
                principal,
                result.lease,
                request.cost,
            )
        usage = Usage(operation_limit, token_limit, own, token_used, operation_used, reset)
        self.refused(principal, outcome.value, request.day)
        if outcome is Outcome.CONCURRENCY:
            return Refusal(
                Reason.CONCURRENCY,
                usage,
                self.settings.concurrency_retry_after_s,
                self.settings.max_in_flight_per_token,
            )
        if outcome is Outcome.INTERVAL:
            retry = max(1, int(result.retry_after_s + 0.999))
            return Refusal(Reason.INTERVAL, usage, retry, request.min_interval_s)
        if outcome is Outcome.RECLAIMING:
            return Refusal(Reason.RECLAIMING, usage, max(1, int(self._lease_s + 0.999)))
        if outcome is Outcome.RECOVERING:
            return Refusal(Reason.RECOVERING, usage, max(1, int(result.retry_after_s + 0.999)))
        return Refusal(Reason.BUDGET, usage, reset)

    async def release(self, ticket: Ticket) -> None:
        if ticket.lease is not None:
            lease, ticket.lease = ticket.lease, None
            if self._release_now is not None:
                self._release_now(ticket.principal.token_id)
            else:
                await self.backend.release(ticket.principal.token_id, lease)
