"""`GET /api/v2/information.php` straight to its endpoint, past Starlette's router.

The contract's endpoint is the hot path: every poller of every operation calls it. This
pure ASGI layer hands it to the endpoint without the routing, the Request object and the
exception layers that the other paths go through; its errors become the same envelope
through the same `error_response`. Anything else, and any bug, goes the usual way.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from routing_points.contract import ENDPOINT
from routing_points.server.errors import error_response
from routing_points.server.services import Services


class InformationFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ENDPOINT or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        try:
            response = await self.services.respond(scope, receive)
        except Exception as exc:
            answer = error_response(exc)
            if answer is None:
                raise
            response = answer
        await response(scope, receive, send)
