"""Admission: the one pipeline every call that consumes goes through, report or admin.

    authenticate -> prepare (parameters, scope) -> admit -> answer within the time limit -> release

It authenticates the `wolkvox-token`, checks that any operation the request names (the
`wolkvox_server` / `wolkvox-server` header, or a `wvNNNN.` Host) is the token's own, then
lets the limit policy admit the call atomically. Endpoints never check limits themselves:
they only say what a call is (a `Call`: its limits name, its cost, its answer).

The time limit (L7) is one budget, counted from authentication: reading an upload's body
and building the answer both come out of it (`ConsumptionGuard`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope

from routing_points.limits.policy import ADDRESS_REFUSAL, LimitPolicy, Ticket
from routing_points.server.addresses import ClientAddress, allowed
from routing_points.server.errors import (
    AddressNotAllowed,
    ApiError,
    BadRequest,
    InvalidToken,
    MissingToken,
)
from routing_points.server.guard import (
    CLIENT_CLOSED,
    CONSUMPTION_STARTED,
    ClientDisconnected,
    ConsumptionGuard,
)
from routing_points.server.held import SlotHeldResponse
from routing_points.server.incoming import Incoming, scan
from routing_points.server.metrics import Metrics
from routing_points.server.ratelimit import RateLimitHeaders
from routing_points.store.reader import Principal, Reader
from routing_points.store.secrets import hash_secret


class NotStarted(RuntimeError):
    """A request before the app's lifespan has started its services (or after it ended)."""


class Call(Protocol):
    """What an endpoint makes of an authenticated request, before it is admitted."""

    # The name the limits know the call by (a report's, "admin"; "" for a refused api).
    api: str
    # What admission charges: 1, or 0 for an answer that costs nothing (a 304).
    cost: int
    # Whether it has a request body to read (in the time limit) before its answer.
    reads_body: bool

    async def read_body(self) -> None:
        """Read the request's body; called before `answer`, only when `reads_body`."""
        ...

    def instant(self, ticket: Ticket) -> bool:
        """Whether the answer is ready without waiting on anything: then it is built
        outside the time limit's task. Asked once, before `answer`."""
        ...

    async def answer(self, ticket: Ticket) -> Response:
        """The admitted call's answer; its refusals are `ApiError`s."""
        ...


class WithoutBody:
    """For calls that read no body: a report's."""

    __slots__ = ()
    reads_body = False

    async def read_body(self) -> None:
        raise AssertionError("this call reads no body")


# principal, the request's headers, its ASGI scope -> the call (or an ApiError, unadmitted)
Prepare = Callable[[Principal, Incoming, Scope], Call]


class Admission:
    def __init__(
        self,
        reader: Reader,
        policy: LimitPolicy,
        guard: ConsumptionGuard,
        metrics: Metrics | None = None,
    ) -> None:
        self.reader = reader
        self.policy = policy
        self.guard = guard
        self.metrics = metrics
        self.rate_limits = RateLimitHeaders(policy.settings)
        self.client_address = ClientAddress(policy.settings.trusted_proxies)

    async def authenticate(self, incoming: Incoming, peer: str | None = None) -> Principal:
        """The live token of the request, from an address its operation allows."""
        CONSUMPTION_STARTED.set(time.monotonic())  # the time limit counts from here
        if incoming.tokens_seen > 1:
            raise BadRequest("THE WOLKVOX-TOKEN HEADER IS REPEATED")
        if not incoming.token:
            raise MissingToken()
        principal = await self.reader.principal(hash_secret(incoming.token))
        if principal is None:
            raise InvalidToken()
        if principal.valid_until is not None and self.policy.clock() >= principal.valid_until:
            raise InvalidToken()  # the previous secret of a rotation, past its grace period
        for nomenclature in incoming.named:
            # Same answer as an unknown token: never reveal whether the other one exists.
            # Bytes: compare_digest refuses a str that is not ASCII (a TypeError, a 500).
            named = nomenclature.encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(named, principal.nomenclature.encode()):
                raise InvalidToken()
        # Expired is refused exactly like revoked.
        if principal.expires_at is not None and principal.expires_at <= self.policy.clock():
            raise InvalidToken()
        if principal.ip_allowlist:
            address = self.client_address(peer, incoming.forwarded_for)
            if not allowed(address, principal.ip_allowlist):
                self.policy.refused(principal, ADDRESS_REFUSAL)
                raise AddressNotAllowed(address)
        return principal

    async def handle(self, scope: Scope, receive: Receive, prepare: Prepare) -> Response:
        """The pipeline: authenticate, prepare the call, admit it, answer it, release it."""
        incoming = scan(scope["headers"])
        client = scope.get("client")
        principal = await self.authenticate(incoming, client[0] if client else None)
        call = prepare(principal, incoming, scope)
        # Admitted at once (the embedded limits), or through a wait: no coroutine when not.
        ticket = self.policy.admit_now(principal, call.api, call.cost)
        if ticket is None:
            ticket = await self.admit(principal, call.api, call.cost)
        else:
            ticket.headers = self.rate_limits(ticket)
        if call.cost and self.metrics is not None:
            self.metrics.consumed(principal.nomenclature, ticket.operation_used)
        return await self.serve(ticket, call, receive)

    async def admit(self, principal: Principal, api: str, cost: int) -> Ticket:
        """Admit the call, or raise the contract's refusal: the limits decide, this answers."""
        decision = await self.policy.admit(principal, api, cost)
        if not isinstance(decision, Ticket):
            raise self.rate_limits.refusal(decision)
        decision.headers = self.rate_limits(decision)
        return decision

    async def serve(self, ticket: Ticket, call: Call, receive: Receive) -> Response:
        """Answer an admitted call within what is left of its time limit: its refusals
        carry the budget headers too, its client may hang up, and its slot is released
        however it ends: an answer's once it is sent."""
        release = partial(self.policy.release, ticket)
        guard = self.guard
        try:
            if call.reads_body:
                # Before the disconnect watcher: it would read from the same channel.
                await guard.bounded(call.read_body())
            if call.instant(ticket) and not guard.injects_faults:
                response = await call.answer(ticket)
            else:
                response = await guard.run(partial(call.answer, ticket), receive)
        except ClientDisconnected:
            response = Response(status_code=CLIENT_CLOSED)
        except ApiError as exc:
            exc.headers.extend(ticket.headers)
            await release()
            raise
        except BaseException:
            await release()
            raise
        # [slot held until sent] released when the body has gone out, not when it is built.
        return SlotHeldResponse(response, release)
