"""What the mirror knows about its own freshness, and how it tells consumers and operators.

Every answer of `information.php` carries `Age` (seconds since the last successful sync),
`x-mirror-synced-at` (that moment, UTC) and, while the upstream fails or refuses,
`x-mirror-stale: <reason>`. `/readyz` shows the same with the last upstream error, and
`/metrics` exports the lag for alerting.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routing_points.contract import ENDPOINT


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class MirrorState:
    upstream: str
    clock: Callable[[], float] = time.time
    # The last successful sync (a 304 confirms the copy is current too).
    synced_at: float | None = None
    # The last sync that changed the local copy.
    changed_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    # Why the copy may be behind the upstream, while it may be: the header's value.
    stale_reason: str | None = None
    # The upstream refused the token: the mirror stopped syncing.
    halted: bool = False
    failures: int = 0
    next_sync_at: float | None = None
    records: int | None = None
    requests: Counter[str] = field(default_factory=Counter)

    def lag_s(self) -> float | None:
        return None if self.synced_at is None else max(0.0, self.clock() - self.synced_at)

    def succeeded(self, records: int | None, changed: bool) -> None:
        now = self.clock()
        self.synced_at = now
        if changed:
            self.changed_at = now
        if records is not None:
            self.records = records
        self.failures, self.stale_reason = 0, None

    def failed(self, reason: str, message: str, *, halt: bool = False) -> None:
        self.failures += 1
        self.stale_reason, self.last_error, self.last_error_at = reason, message, self.clock()
        self.halted = self.halted or halt

    def headers(self) -> list[tuple[bytes, bytes]]:
        lag = self.lag_s()
        if lag is None:
            return [(b"x-mirror-stale", b"never-synced")]
        assert self.synced_at is not None
        headers = [
            (b"age", str(int(lag)).encode()),
            (b"x-mirror-synced-at", rfc3339(self.synced_at).encode()),
        ]
        if self.stale_reason is not None:
            headers.append((b"x-mirror-stale", self.stale_reason.encode()))
        return headers

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once a copy is there to serve, unless the upstream refused the token."""
        lag = self.lag_s()
        detail: dict[str, Any] = {
            "upstream": self.upstream,
            "status": "halted" if self.halted else self.stale_reason or "ok",
            "synced_at": None if self.synced_at is None else rfc3339(self.synced_at),
            "lag_s": None if lag is None else round(lag, 3),
            "records": self.records,
            "last_error": self.last_error,
            "last_error_at": None if self.last_error_at is None else rfc3339(self.last_error_at),
            "next_sync_at": None if self.next_sync_at is None else rfc3339(self.next_sync_at),
        }
        return self.synced_at is not None and not self.halted, detail


class MirrorCollector(Collector):
    """Prometheus families read from the state at scrape time (so the lag is current)."""

    def __init__(self, state: MirrorState) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        state, labels = self.state, ["upstream"]
        lag = GaugeMetricFamily(
            "routing_points_mirror_lag_seconds",
            "Seconds since the mirror's last successful sync (NaN before the first).",
            labels=labels,
        )
        lag_s = state.lag_s()
        lag.add_metric([state.upstream], float("nan") if lag_s is None else lag_s)
        yield lag
        synced = GaugeMetricFamily(
            "routing_points_mirror_last_success_timestamp_seconds",
            "When the mirror last synced successfully.",
            labels=labels,
        )
        synced.add_metric([state.upstream], state.synced_at or 0.0)
        yield synced
        up = GaugeMetricFamily(
            "routing_points_mirror_up",
            "1 while the last sync succeeded, 0 while the upstream fails or refuses.",
            labels=labels,
        )
        up.add_metric([state.upstream], 0.0 if state.stale_reason or state.halted else 1.0)
        yield up
        error = GaugeMetricFamily(
            "routing_points_mirror_last_error_info",
            "The last upstream error (value: when it happened).",
            labels=[*labels, "reason", "error"],
        )
        if state.last_error is not None:
            error.add_metric(
                [state.upstream, state.stale_reason or "", state.last_error],
                state.last_error_at or 0.0,
            )
        yield error
        requests = CounterMetricFamily(
            "routing_points_mirror_upstream_requests",
            "Requests the mirror sent its upstream, by result.",
            labels=[*labels, "result"],
        )
        for result, count in sorted(state.requests.items()):
            requests.add_metric([state.upstream, result], count)
        yield requests


class MirrorHeaders:
    """Freshness headers on the contract's endpoint. (Admin writes are refused by the admin
    API itself, after the token: `MirrorRunner.start`.)"""

    def __init__(self, app: ASGIApp, state: MirrorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path != ENDPOINT:
            await self.app(scope, receive, send)
            return

        async def send_with_freshness(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *self.state.headers()]}
            await send(message)

        await self.app(scope, receive, send_with_freshness)
