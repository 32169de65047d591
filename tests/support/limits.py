"""An admission's facts for tests that drive a limits backend directly."""

from __future__ import annotations

from typing import Any

from routing_points.limits.backend import AdmitRequest


def admit_request(token_id: int, operation_id: int, **overrides: Any) -> AdmitRequest:
    """A consumption with no interval and room to spare; `overrides` set any other fact."""
    facts: dict[str, Any] = {
        "day": "2000-01-01",
        "cost": 1,
        "operation_limit": 1000,
        "token_limit": None,
        "max_in_flight": 100,
        "lease_s": 30,
        "interval_key": None,
        "min_interval_s": 0,
        "now": 0.0,
        "day_ttl_s": 600,
    }
    return AdmitRequest(token_id=token_id, operation_id=operation_id, **{**facts, **overrides})
