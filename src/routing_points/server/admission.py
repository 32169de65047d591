"""Admission: the one place that decides whether a request may consume.

It authenticates the `wolkvox-token`, checks that any operation the request names (the
`wolkvox_server` / `wolkvox-server` header, or a `wvNNNN.` Host) is the token's own, then
lets the limit policy admit the call atomically. Routes never check limits themselves.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from functools import partial

from starlette.responses import Response

from routing_points.limits.policy import LimitPolicy, Ticket
from routing_points.server.addresses import ClientAddress, allowed
from routing_points.server.errors import (
    AddressNotAllowed,
    ApiError,
    BadRequest,
    InvalidToken,
    MissingToken,
)
from routing_points.server.guard import CLIENT_CLOSED, CONSUMPTION_STARTED, ClientDisconnected
from routing_points.server.held import SlotHeldResponse
from routing_points.server.incoming import Incoming
from routing_points.server.ratelimit import RateLimitHeaders
from routing_points.store.reader import Principal, Reader
from routing_points.store.secrets import hash_secret


class Admission:
    def __init__(self, reader: Reader, policy: LimitPolicy) -> None:
        self.reader = reader
        self.policy = policy
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
                self.policy.refused(principal, "address")
                raise AddressNotAllowed(address)
        return principal

    async def admit(self, principal: Principal, api: str, cost: int) -> Ticket:
        """Admit the call, or raise the contract's refusal: the limits decide, this answers."""
        decision = await self.policy.admit(principal, api, cost)
        if isinstance(decision, Ticket):
            return self.rate_limits.admitted(decision)
        raise self.rate_limits.refusal(decision)

    async def serve(self, ticket: Ticket, respond: Callable[[], Awaitable[Response]]) -> Response:
        """Answer an admitted call: its refusals carry the budget headers too, its client
        may hang up, and its slot is released however it ends: an answer's once it is sent."""
        release = partial(self.policy.release, ticket)
        try:
            response = await respond()
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
