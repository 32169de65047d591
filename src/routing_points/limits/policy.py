"""What the contract demands of every consumption (L2, L8, L9), over any backend.

The policy computes the day and the limits that apply to a principal, asks the backend to
admit in one atomic step, and turns the outcome into a contract refusal with the headers
that let a client plan: `Retry-After`, and the IETF draft `RateLimit-Policy` / `RateLimit`
fields showing the daily budget and what is left of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from routing_points.clock import Clock
from routing_points.limits.backend import AdmitRequest, BackendUnavailable, LimitBackend, Outcome
from routing_points.limits.calendar import QuotaCalendar
from routing_points.server.errors import (
    PollTooSoon,
    RawHeaders,
    ServiceUnavailable,
    TokenLimitExceeded,
    TooManySimultaneous,
)
from routing_points.settings import Settings
from routing_points.store.reader import Principal

DAY_WINDOW_S = 86_400
logger = logging.getLogger("routing_points.limits")


@dataclass(slots=True)
class Ticket:
    """An admitted call: what it holds, and what the client is told about its budget."""

    principal: Principal
    token_used: int
    operation_used: int
    operation_limit: int
    token_limit: int
    headers: RawHeaders = field(default_factory=list)
    lease: str | None = None
    cost: int = 1


class LimitPolicy:
    def __init__(self, settings: Settings, backend: LimitBackend, clock: Clock) -> None:
        self.settings = settings
        self.backend = backend
        self.clock = clock
        self.calendar = QuotaCalendar()
        self._poll_header = (b"x-poll-interval", str(settings.poll_interval_s).encode())
        self._lease_s = settings.slot_lease_s
        self._degraded_header = (b"x-limits", b"degraded")
        self._policy_headers: dict[tuple[int, int | None], tuple[bytes, bytes]] = {}
        # Backends whose release needs no I/O offer it synchronously: a coroutine less.
        self._release_now: Callable[[int], None] | None = getattr(backend, "release_now", None)
        # Told of every refusal (operation id, local day, kind), to count them.
        self.on_refusal: Callable[[int, str, str], None] | None = None

    def refused(self, principal: Principal, kind: str, day: str | None = None) -> None:
        if self.on_refusal is not None:
            if day is None:
                day = self.calendar.day(principal.timezone, self.clock()).day
            self.on_refusal(principal.operation_id, day, kind)

    def limits_of(self, principal: Principal) -> tuple[int, int]:
        """(the operation's daily budget, the most this token may use of it today)."""
        operation_limit = principal.licenses * self.settings.daily_calls_per_license
        own = principal.daily_limit
        return operation_limit, operation_limit if own is None else min(own, operation_limit)

    async def admit(self, principal: Principal, api: str, cost: int) -> Ticket:
        """Admit one call or raise the contract's refusal. A refusal costs nothing."""
        operation_limit, token_limit = self.limits_of(principal)
        if not self.settings.limits_enabled:
            return Ticket(
                principal, 0, 0, operation_limit, token_limit, [self._poll_header], cost=cost
            )
        now = self.clock()
        quota_day = self.calendar.day(principal.timezone, now)
        reset = quota_day.seconds_left(now)
        interval = self.settings.min_poll_interval_s
        request = AdmitRequest(  # positional: this runs on every request
            principal.token_id,
            principal.operation_id,
            quota_day.day,
            cost,
            operation_limit,
            principal.daily_limit,
            self.settings.max_in_flight_per_token,
            self._lease_s,
            f"{principal.token_id}:{api}" if interval > 0 else None,
            interval,
            now,
            reset + 3600,
        )
        try:
            result = await self.backend.admit(request)
        except BackendUnavailable:
            if not self.settings.redis_fail_open:
                raise ServiceUnavailable("THE LIMITS SERVICE IS UNAVAILABLE") from None
            # The backend logs the outage once when it starts and once when it ends.
            return Ticket(
                principal,
                0,
                0,
                operation_limit,
                token_limit,
                [self._poll_header, self._degraded_header],
                cost=cost,
            )
        headers = self._headers(
            reset,
            operation_limit,
            token_limit,
            principal.daily_limit,
            result.token_used,
            result.operation_used,
        )
        if result.outcome is Outcome.ADMITTED:
            return Ticket(
                principal,
                result.token_used,
                result.operation_used,
                operation_limit,
                token_limit,
                headers,
                result.lease,
                cost,
            )
        self.refused(principal, result.outcome.value, quota_day.day)
        if result.outcome is Outcome.CONCURRENCY:
            retry = str(self.settings.concurrency_retry_after_s).encode()
            raise TooManySimultaneous(
                self.settings.max_in_flight_per_token, headers=[*headers, (b"retry-after", retry)]
            )
        if result.outcome is Outcome.INTERVAL:
            retry = str(max(1, int(result.retry_after_s + 0.999))).encode()
            raise PollTooSoon(interval, headers=[*headers, (b"retry-after", retry)])
        if result.outcome is Outcome.RECLAIMING:
            retry = str(max(1, int(self.settings.slot_lease_s + 0.999))).encode()
            raise ServiceUnavailable(
                "A SLOT HELD BY A STOPPED SERVER IS BEING RECLAIMED",
                headers=[*headers, (b"retry-after", retry)],
            )
        retry = str(reset).encode()
        raise TokenLimitExceeded(headers=[*headers, (b"retry-after", retry)])

    async def release(self, ticket: Ticket) -> None:
        if ticket.lease is not None:
            lease, ticket.lease = ticket.lease, None
            if self._release_now is not None:
                self._release_now(ticket.principal.token_id)
            else:
                await self.backend.release(ticket.principal.token_id, lease)

    def _policy_header(self, operation_limit: int, own_limit: int | None) -> tuple[bytes, bytes]:
        """RateLimit-Policy: the same few values for every call, so built once each."""
        key = (operation_limit, own_limit)
        header = self._policy_headers.get(key)
        if header is None:
            policy = f'"daily";q={operation_limit};w={DAY_WINDOW_S}'
            if own_limit is not None:
                policy += f', "token";q={own_limit};w={DAY_WINDOW_S}'
            header = self._policy_headers[key] = (b"ratelimit-policy", policy.encode())
        return header

    def _headers(
        self,
        reset: int,
        operation_limit: int,
        token_limit: int,
        own_limit: int | None,
        token_used: int,
        operation_used: int,
    ) -> RawHeaders:
        operation_left = max(0, operation_limit - operation_used)
        state = f'"daily";r={operation_left};t={reset}'
        if own_limit is not None:
            token_left = max(0, min(token_limit - token_used, operation_left))
            state += f', "token";r={token_left};t={reset}'
        return [
            self._poll_header,
            self._policy_header(operation_limit, own_limit),
            (b"ratelimit", state.encode()),
        ]
