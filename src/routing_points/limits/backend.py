"""The state a limit needs, behind one interface: one atomic step to admit, one to release.

A backend decides admission as a single indivisible step (check concurrency, interval and
budget, then take a slot and charge) so that no caller can slip between a check and the
act. The embedded backend does it synchronously on the event loop; the Redis backend in
one Lua script.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Outcome(enum.Enum):
    ADMITTED = "admitted"
    CONCURRENCY = "concurrency"
    INTERVAL = "interval"
    BUDGET = "budget"
    # The token's slots are full, but one of them is held by a process that stopped
    # renewing it (it died): not the client's doing, and it comes back within seconds.
    RECLAIMING = "reclaiming"
    # Redis lost the slots of the calls running (its data was lost): none is admitted until
    # their holders have put them back, within a lease.
    RECOVERING = "recovering"


@dataclass(slots=True, kw_only=True)  # not frozen: frozen init is slow, and this is per call
class AdmitRequest:
    """One admission's facts, built by keyword: a field added cannot shift the others."""

    token_id: int
    operation_id: int
    day: str
    # 1 for a consumption, 0 for a free call (a 304) that still takes a slot.
    cost: int
    operation_limit: int
    token_limit: int | None
    max_in_flight: int
    # How long a slot lives unrenewed if its holder dies without releasing it.
    lease_s: float
    # Set when the optional minimum interval applies: "<token>:<api>".
    interval_key: str | None
    min_interval_s: float
    now: float
    # Seconds until the end of the local day, for expiring the day's counters.
    day_ttl_s: int


@dataclass(slots=True)  # not frozen either: one per request too
class AdmitResult:
    outcome: Outcome
    token_used: int
    operation_used: int
    # What release() needs; None when nothing was taken.
    lease: str | None = None
    # For INTERVAL and RECOVERING: seconds until a call may be admitted.
    retry_after_s: float = 0.0


# What an admitted call took, from a backend that admits without waiting (`admit_now`):
# the token's and the operation's counts after it, and its lease.
Taken = tuple[int, int, str]


class LimitBackend(Protocol):
    async def admit(self, request: AdmitRequest) -> AdmitResult: ...

    async def release(self, token_id: int, lease: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class BackendUnavailable(Exception):
    """The backend's state cannot be reached; the policy decides fail-open or fail-closed."""
