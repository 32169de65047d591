"""Admission: the one place that decides whether a request may consume.

It authenticates the `wolkvox-token`, checks that any operation the request names (the
`wolkvox_server` / `wolkvox-server` header, or a `wvNNNN.` Host) is the token's own, then
lets the limit policy admit the call atomically. Routes never check limits themselves.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers
from starlette.responses import Response

from routing_points.limits.policy import LimitPolicy, Ticket
from routing_points.server.errors import ApiError, InvalidToken, MissingToken
from routing_points.server.guard import CLIENT_CLOSED, ClientDisconnected
from routing_points.store.reader import Principal, Reader
from routing_points.store.secrets import hash_secret

_HOST_OPERATION = re.compile(r"^wv([0-9]{4})\.", re.IGNORECASE)
_SERVER_HEADERS = ("wolkvox_server", "wolkvox-server")


def named_operations(headers: Headers) -> list[str]:
    """Every operation the request names; a value that names none is kept as it is."""
    named: list[str] = []
    for header in _SERVER_HEADERS:
        value = headers.get(header, "").strip()
        if value:
            digits = value.removeprefix("wv").removeprefix("WV")
            named.append(digits.zfill(4) if digits.isdigit() and len(digits) <= 4 else value)
    host = _HOST_OPERATION.match(headers.get("host", ""))
    if host is not None:
        named.append(host.group(1))
    return named


class Admission:
    def __init__(self, reader: Reader, policy: LimitPolicy) -> None:
        self.reader = reader
        self.policy = policy

    async def authenticate(self, headers: Headers) -> Principal:
        secret = headers.get("wolkvox-token", "").strip()
        if not secret:
            raise MissingToken()
        digest = hash_secret(secret)
        principal = await self.reader.principal(digest)
        if principal is None:
            raise InvalidToken()
        for nomenclature in named_operations(headers):
            # Same answer as an unknown token: never reveal whether the other one exists.
            if not hmac.compare_digest(nomenclature, principal.nomenclature):
                raise InvalidToken()
        return principal

    async def admit(self, principal: Principal, api: str, cost: int = 1) -> Ticket:
        return await self.policy.admit(principal, api, cost)

    async def release(self, ticket: Ticket) -> None:
        await self.policy.release(ticket)

    async def serve(self, ticket: Ticket, respond: Callable[[], Awaitable[Response]]) -> Response:
        """Answer an admitted call: its refusals carry the budget headers too, its client
        may hang up, and its slot is released however it ends."""
        try:
            return await respond()
        except ApiError as exc:
            exc.headers.extend(ticket.headers)
            raise
        except ClientDisconnected:
            return Response(status_code=CLIENT_CLOSED)
        finally:
            await self.policy.release(ticket)
