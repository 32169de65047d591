"""Time as a dependency, so the quota day can be tested at any local midnight."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds since the epoch, UTC."""
        ...


# The system's clock is `time.time` itself, not a function around it: every admission
# reads it, and a Python call more per request is not free on the hot path.
system_clock: Clock = time.time


class ManualClock:
    """A clock that tests move by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
