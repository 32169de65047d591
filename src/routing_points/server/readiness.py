"""`GET /readyz`: whether this server can answer now (its store, its limits, its addon).

Never the text of a failure: it would name hosts. Answered in the contract's envelope.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from routing_points.limits.backend import BackendUnavailable, LimitBackend
from routing_points.server.addon import ServerAddon
from routing_points.server.errors import envelope
from routing_points.store.reader import Reader, StoreUnavailable


async def readiness(
    reader: Reader | None, limits: LimitBackend | None, addon: ServerAddon | None
) -> Response:
    """200 when every part answers; 503 and which one does not (or "starting")."""
    checks: dict[str, Any]
    if reader is None or limits is None:
        checks = {"store": "starting", "limits": "starting"}
    else:
        checks = {"store": "ok", "limits": "ok"}
        try:
            await reader.ping()
        except StoreUnavailable:
            checks["store"] = "unavailable"
        try:
            await limits.ping()
        except BackendUnavailable:
            checks["limits"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    if addon is not None:
        addon_ready, checks[addon.name] = addon.readiness()
        ready = ready and addon_ready
    status = 200 if ready else 503
    return envelope(
        status,
        "READY" if ready else "NOT READY",
        checks,
        error=None if ready else "SERVICE UNAVAILABLE",
    )
