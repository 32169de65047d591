"""The watch loop: poll with the last ETag, record what changed, tell everyone who listens.

An unchanged operation answers 304 and costs nothing. The interval is never shorter than
the service's advice (`X-Poll-Interval`) nor than what keeps the watcher's own calls within
a share of the daily budget (10% by default), assuming every poll costs one; every
adjustment is logged. Failures are logged in one line each and retried with back-off.

A stop request (Ctrl-C, SIGTERM) abandons a poll still reading, however big the operation:
nothing of it is recorded yet, so nothing is lost. Once its snapshot is being written the
poll finishes, so what is stored is also printed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO
from zoneinfo import ZoneInfo

import orjson

from routing_points.client import Client, MalformedResponse, QuotaExceeded, RoutingPointsError
from routing_points.client.models import RoutingPoint
from routing_points.watch.diff import changes_between, newly_stale
from routing_points.watch.exporter import WatchMetrics
from routing_points.watch.history import Event, History
from routing_points.watch.webhook import WebhookSender

logger = logging.getLogger("routing_points.watch")
# The smallest daily budget there is (1 license x 1,000), when the service does not say.
SMALLEST_BUDGET = 1000
# The history keeps rp_ids as SQLite integers: 64 bits, signed.
STORABLE_IDS = range(0, 2**63)
FIRST_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class IntervalPolicy:
    requested_s: float
    budget_share: float

    def interval(self, advised_s: int | None, daily_budget: int | None) -> tuple[float, str]:
        """The interval to use, and why it differs from the requested one ("" if not)."""
        interval, reasons = self.requested_s, []
        if advised_s is not None and interval < advised_s:
            interval = float(advised_s)
            reasons.append(f"the service advises {advised_s} s (X-Poll-Interval)")
        budget = daily_budget or SMALLEST_BUDGET
        floor = math.ceil(86_400 / (self.budget_share * budget))
        if interval < floor:
            interval = float(floor)
            reasons.append(
                f"polls must stay within {self.budget_share * 100:g}% of a daily budget of {budget}"
            )
        return interval, "; ".join(reasons)


class StopRequest:
    """The stop flag a signal handler sets and `Watcher.run` waits on between polls.

    Not a `threading.Event`: its `set()` takes a lock that its `wait()` holds for a moment,
    and a handler runs in the main thread, so a signal landing then, or a second one landing
    in the first one's `set()` (Ctrl-C twice, a supervisor's second SIGTERM), blocks the
    watcher for good. Setting this takes no lock: a flag, and a byte on a pipe that ends
    the wait.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._set = False
        self._closed = False

    def set(self) -> None:
        self._set = True
        if not self._closed:
            with contextlib.suppress(BlockingIOError):  # a full pipe wakes the wait already
                os.write(self._write, b"\0")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Until set, or `timeout` seconds; True if set."""
        if not self._set:
            # A handler that sets it interrupts select(), which then sees the byte (PEP 475).
            select.select([self._read], [], [], max(timeout, 0))
        return self._set

    def close(self) -> None:
        """In the main thread, like the handlers: none writes to a closed descriptor."""
        if not self._closed:
            self._closed = True
            os.close(self._read)
            os.close(self._write)


def _check_storable(points: dict[int, RoutingPoint]) -> None:
    """An rp_id the history cannot hold is the service's mistake: one line, not a crash."""
    for odd in (min(points), max(points)) if points else ():
        if odd not in STORABLE_IDS:
            raise MalformedResponse(f"a routing point's rp_id is out of range: {str(odd)[:40]}")


class PollInterrupted(Exception):
    """A stop request arrived while a poll was reading: nothing of it was recorded."""


@dataclass(frozen=True, slots=True)
class PollResult:
    events: list[Event]
    not_modified: bool


class Watcher:
    def __init__(
        self,
        client: Client,
        history: History,
        policy: IntervalPolicy,
        *,
        stale_after: timedelta,
        timezone: ZoneInfo | None,
        out: IO[str],
        metrics: WatchMetrics | None = None,
        webhook: WebhookSender | None = None,
        explain_interval: bool = True,
    ) -> None:
        self.client = client
        self.server = client.server
        self.history = history
        self.policy = policy
        self.stale_after = stale_after
        self.timezone = timezone
        self.out = out
        self.metrics = metrics
        self.webhook = webhook
        self.interval_s = policy.requested_s
        # Whether to log why the interval differs from the requested one (not under --once).
        self.explain_interval = explain_interval
        # True while a stop request may abandon the poll (see `interrupt`).
        self.interruptible = False
        self._loaded = False
        self._baseline: tuple[str | None, dict[int, RoutingPoint]] | None = None
        self._explained = ""

    def _now_local(self) -> datetime:
        return datetime.now(self.timezone).replace(tzinfo=None)

    def _newest(self) -> tuple[str | None, dict[int, RoutingPoint]] | None:
        """The newest snapshot's ETag and points: read from the history once, at start
        (so a restarted watcher compares with what it stored), then kept by `poll`."""
        if not self._loaded:
            latest = self.history.latest(self.server)
            self._baseline = None if latest is None else (latest.etag, latest.points())
            self._loaded = True
        return self._baseline

    def interrupt(self) -> None:
        """Called from a signal handler: abandon the poll if it is still reading."""
        if self.interruptible:
            self.interruptible = False
            raise PollInterrupted

    def poll(self) -> PollResult:
        self.interruptible = True
        try:
            return self._poll()
        finally:
            self.interruptible = False

    def _poll(self) -> PollResult:
        newest = self._newest()
        etag = newest[0] if newest is not None else None
        records: list[dict[str, object]] = []
        not_modified, new_etag = False, None
        for index, page in enumerate(self.client.iter_routing_points(if_none_match=etag)):
            if index == 0:
                not_modified, new_etag = page.not_modified, page.etag
            records.extend(page.records)
        now = time.time()
        if not_modified:
            assert newest is not None
            points = newest[1]
            changes = []
        else:
            points = {p.rp_id: p for p in RoutingPoint.from_records(records)}
            _check_storable(points)
            # The first snapshot is the baseline: nothing has changed yet.
            changes = changes_between(newest[1], points) if newest is not None else []
        already_stale = self.history.stale(self.server)
        # A point used again since it went stale may go stale again later.
        for change in changes:
            if change.kind == "last_use_advanced":
                already_stale.discard(change.rp_id)
        stale_changes, stale = newly_stale(
            points.values(), already_stale, self._now_local(), self.stale_after
        )
        # The first snapshot is a silent baseline: points already stale then are remembered
        # as stale, not reported.
        if newest is not None:
            changes += stale_changes
        stored: list[Event] = []
        self.interruptible = False  # from here on, what is stored is also printed
        if not not_modified or changes or stale != already_stale:
            stored = self.history.record(
                self.server,
                changes,
                records=None if not_modified else records,
                etag=new_etag if not not_modified else etag,
                stale=stale,
                now=now,
            )
            if not not_modified:
                self._baseline = (new_etag, points)
        for event in stored:
            self.out.write(orjson.dumps(event.as_dict()).decode() + "\n")
        self.out.flush()
        logger.info(
            "polled %s: %s, %d points, %d events",
            self.server,
            "unchanged (304)"
            if not_modified
            else "new snapshot"
            if newest is not None
            else "baseline",
            len(points),
            len(stored),
        )
        if self.metrics is not None:
            self.metrics.succeeded(
                points, self._now_local(), now, self.client.remaining_budget, len(stale)
            )
        self._adjust_interval()
        return PollResult(stored, not_modified)

    def _adjust_interval(self, *, explain: bool = True) -> None:
        limit = self.client.budget.limit if self.client.budget is not None else None
        self.interval_s, why = self.policy.interval(self.client.poll_interval_s, limit)
        if not explain:
            return
        if why and why != self._explained and self.explain_interval:
            logger.warning(
                "polling every %g s instead of %g s: %s",
                self.interval_s,
                self.policy.requested_s,
                why,
            )
        self._explained = why

    def deliver(self) -> None:
        """Send what waits in the history; a stop request may cut it short (it is retried
        from the history next time, at least once)."""
        if self.webhook is not None:
            self.interruptible = True
            try:
                self.webhook.deliver()
            finally:
                self.interruptible = False

    def run(self, stop: StopRequest) -> None:
        """Poll until `stop` is set (a signal handler also calls `interrupt`)."""
        failures = 0
        # Until a poll has told the service's advice and budget, the safest interval is
        # assumed (for the back-off after a failure), and not explained: it is not known yet.
        self._adjust_interval(explain=False)
        while not stop.is_set():
            try:
                self.poll()
                failures = 0
                wait = self.interval_s  # as adjusted by what this poll learned
            except RoutingPointsError as exc:
                failures += 1
                logger.error("poll failed: %s: %s", type(exc).__name__, exc)
                if self.metrics is not None:
                    self.metrics.failed()
                wait = min(self.interval_s, FIRST_RETRY_S * 2 ** (failures - 1))
                if isinstance(exc, QuotaExceeded) and exc.reset_at is not None:
                    wait = max(
                        wait, (exc.reset_at - datetime.now(exc.reset_at.tzinfo)).total_seconds()
                    )
            self.deliver()
            stop.wait(wait)
