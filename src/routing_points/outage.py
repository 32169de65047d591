"""An outage of a dependency, logged once when it starts and once when it ends.

A dead dependency fails every request; a warning per request would bury the one line
that matters (when it started, and why) under thousands of copies.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("routing_points.outage")


class Outage:
    __slots__ = ("cause", "name", "since")

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None
        self.cause = ""

    def failed(self, cause: str) -> None:
        """A call failed: log it if the dependency was up until now."""
        if self.since is None:
            self.since = time.monotonic()
            self.cause = cause
            logger.error("%s unavailable: %s", self.name, cause)

    def ended(self) -> None:
        """A call succeeded: log the end of the outage, if there was one."""
        if self.since is not None:
            lasted = time.monotonic() - self.since
            self.since = None
            logger.warning(
                "%s available again after %.1f s (it failed with: %s)",
                self.name,
                lasted,
                self.cause,
            )
