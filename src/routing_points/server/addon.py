"""A hook for what runs beside the API in the same process (the mirror is one).

The server knows nothing of what an addon does: it starts it once its own services are
up, stops it first, puts its middleware outermost, and asks it for its part of `/readyz`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from starlette.middleware import Middleware

if TYPE_CHECKING:
    from routing_points.server.services import Services


class ServerAddon(Protocol):
    # Its key in `/readyz`.
    name: str

    async def start(self, services: Services) -> None:
        """Called in the lifespan once the store, limits and metrics are up."""
        ...

    async def stop(self) -> None: ...

    def middleware(self) -> list[Middleware]:
        """ASGI middleware around the whole app, outermost first."""
        ...

    def readiness(self) -> tuple[bool, Any]:
        """Whether the addon lets the server be ready, and what `/readyz` shows of it."""
        ...
