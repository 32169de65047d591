"""The mirror beside the server: one sync loop, the only thing that talks to the upstream.

It runs in the server's process (one process: `mirror` never forks workers), so local
consumers, however many, never reach the upstream. Each failure is one log line and a
longer wait; a refused upstream token is logged as an ERROR and halts the loop (retrying
a revoked token forever helps no one), while the last good copy is still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.middleware import Middleware

from routing_points.client import AsyncClient, RetryPolicy, errors
from routing_points.mirror.freshness import MirrorCollector, MirrorHeaders, MirrorState
from routing_points.mirror.schedule import BudgetShare, Schedule
from routing_points.mirror.sync import (
    CountingTransport,
    MirrorStore,
    SyncOutcome,
    UpstreamChanged,
    sync_once,
)
from routing_points.server.services import Services
from routing_points.store.errors import StoreError

logger = logging.getLogger("routing_points.mirror")
_QUOTA = re.compile(r"\bq=(\d+)")
# `--once` against an upstream that keeps changing under it: tries before giving up.
RECORD_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    upstream_server: str
    token: str = field(repr=False)
    base_url: str | None = None
    # The local operation that holds the copy (default: the upstream's nomenclature).
    local_server: str | None = None
    every_s: float = 300.0
    budget_share: float = 0.5
    max_backoff_s: float = 3600.0
    # Used only when the local operation does not exist yet.
    timezone: str = "UTC"
    licenses: int = 1
    timeout_s: float = 90.0

    @property
    def server(self) -> str:
        return self.local_server or self.upstream_server

    @property
    def url(self) -> str:
        return (self.base_url or f"https://wv{self.upstream_server}.wolkvox.com").rstrip("/")

    @property
    def identity(self) -> str:
        return f"{self.url}#{self.upstream_server}"

    def client(self, transport: httpx.AsyncBaseTransport, retries: int) -> AsyncClient:
        return AsyncClient(
            server=self.upstream_server,
            token=self.token,
            base_url=self.base_url,
            timeout=self.timeout_s,
            transport=transport,
            retry=RetryPolicy(max_retries=retries),
        )


def stale_reason(error: Exception) -> str:
    """The `x-mirror-stale` value for a failed sync."""
    if isinstance(error, errors.MissingToken | errors.InvalidToken):
        return "upstream-token-refused"
    if isinstance(error, errors.QuotaExceeded):
        return "upstream-budget-spent"
    if isinstance(error, errors.TooManySimultaneous):
        return "upstream-busy"
    if isinstance(error, errors.TransportError):
        return "upstream-unreachable"
    if isinstance(error, errors.HTTPStatusError):
        return "upstream-unavailable"
    if isinstance(error, StoreError):
        return "upstream-data-refused"
    if isinstance(error, SQLAlchemyError):
        return "local-store-unavailable"
    if isinstance(error, errors.RoutingPointsError):
        return "upstream-error"
    return "mirror-error"


def _describe(error: Exception) -> str:
    if isinstance(error, SQLAlchemyError):
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return f"{type(error).__name__}: {error}"


async def record_once(config: MirrorConfig, store: MirrorStore) -> SyncOutcome:
    """One snapshot into the local store (`mirror --once`), with the SDK's own retries."""
    await asyncio.to_thread(
        store.ensure_operation,
        f"Mirror of {config.upstream_server}",
        config.licenses,
        config.timezone,
    )
    async with config.client(httpx.AsyncHTTPTransport(), RetryPolicy().max_retries) as client:
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return await sync_once(client, store)
            except UpstreamChanged:
                if attempt == RECORD_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")


class Mirror:
    """The server addon: starts the loop with the app, adds the freshness headers."""

    name = "mirror"

    def __init__(
        self, config: MirrorConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.state = MirrorState(config.upstream_server)
        self.budget = BudgetShare(config.budget_share)
        self.schedule = Schedule(config.every_s, self.budget, config.max_backoff_s)
        self.transport = CountingTransport(transport)
        self.client: AsyncClient | None = None
        self.store: MirrorStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock: Connection | None = None
        self._learned_budget = False

    def middleware(self) -> list[Middleware]:
        return [Middleware(MirrorHeaders, state=self.state)]

    def readiness(self) -> tuple[bool, Any]:
        return self.state.readiness()

    async def start(self, services: Services) -> None:
        assert services.engine is not None
        # Writes of points would be undone by the next sync, or hide upstream changes behind
        # a stale ETag: refused, to a valid admin token only (nobody else learns it is a
        # mirror), in the admin API and the console. Tokens and the allow-list are local.
        services.admin.point_writes_refused = (
            f"THIS SERVER MIRRORS OPERATION {self.state.upstream}: WRITE TO ITS UPSTREAM"
        )
        store = self.store = MirrorStore(services.engine, self.config.server, self.config.identity)
        await asyncio.to_thread(
            store.ensure_operation,
            f"Mirror of {self.config.upstream_server}",
            self.config.licenses,
            self.config.timezone,
        )
        self._lock = await asyncio.to_thread(self._sole_mirror, store)
        self.state.synced_at = await asyncio.to_thread(store.synced_at)
        self.state.records = await asyncio.to_thread(store.records)
        if services.metrics is not None:
            services.metrics.registry.register(MirrorCollector(self.state))
        # No SDK retries: every retry is the loop's, on its schedule and within the share.
        self.client = self.config.client(self.transport, retries=0)
        self._task = asyncio.create_task(self.run(), name="mirror")

    def _sole_mirror(self, store: MirrorStore) -> Connection | None:
        """On PostgreSQL, one mirror per local operation (SQLite has its file lock)."""
        if store.engine.dialect.name != "postgresql":
            return None
        digest = hashlib.sha256(f"routing-points mirror {store.server}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn = store.engine.connect()
        held = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        conn.commit()
        if not held:
            conn.close()
            raise RuntimeError(
                f"another mirror already keeps operation {store.server} of this database in sync"
            )
        return conn

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            await self.client.aclose()
        if self._lock is not None:
            await asyncio.to_thread(self._lock.close)
        self._task = self.client = self._lock = None

    def _first_wait(self, now: float) -> float:
        """After a restart, the previous process's last sync still counts."""
        synced = self.state.synced_at
        if synced is None:
            return 0.0
        return max(0.0, synced + self.schedule.interval().seconds - now)

    async def run(self) -> None:
        wait = self._first_wait(time.time())
        while True:
            self.state.next_sync_at = time.time() + wait
            await asyncio.sleep(wait)
            now = time.time()
            budget_wait = self.budget.wait_s(now, self.schedule.requests_per_sync)
            if budget_wait > 0:
                logger.warning(
                    "the mirror's share of the upstream budget is spent (%d of %d requests): "
                    "next sync in %d s",
                    self.budget.spent,
                    self.budget.allowance,
                    budget_wait,
                )
                # Not a failure, but the copy may fall behind: consumers are told.
                self.state.stale_reason = "budget-share-spent"
                wait = budget_wait
                continue
            result = await self.sync()
            if result is None:
                return
            wait = max(0.0, result - (time.time() - now))

    async def sync(self) -> float | None:
        """One sync and its bookkeeping; the seconds until the next one (None: halt)."""
        assert self.client is not None
        assert self.store is not None
        sent, now = self.transport.sent, time.time()
        try:
            outcome = await sync_once(self.client, self.store)
        except UpstreamChanged as change:
            self._account(sent, now)
            logger.info("%s: the next sync tries again", change)
            return self.schedule.interval().seconds
        except (errors.RoutingPointsError, StoreError, SQLAlchemyError) as error:
            self._account(sent, now)
            return self._failed(error)
        except Exception as error:
            # A bug must not end the loop in silence: logged whole, then retried.
            logger.exception("sync of %s failed unexpectedly", self.config.upstream_server)
            self._account(sent, now)
            return self._failed(error)
        try:
            await self._learn_budget()
        except errors.RoutingPointsError as error:
            logger.warning("could not read the upstream's budget: %s", _describe(error))
        self._account(sent, now)
        self.schedule.advised_s = self.client.poll_interval_s
        result = outcome.result
        if result is not None:
            self.schedule.requests_per_sync = outcome.pages
            if result.modified:
                logger.info(
                    "synced %s from %s: %d added, %d changed, %d deleted (%d records, %s)",
                    self.config.server,
                    self.config.upstream_server,
                    result.added,
                    result.changed,
                    result.deleted,
                    result.total,
                    "1 page" if outcome.pages == 1 else f"{outcome.pages} pages",
                )
        self.state.succeeded(
            None if result is None else result.total, result is not None and result.modified
        )
        why = self.schedule.explain()
        if why:
            logger.warning(
                "syncing every %g s instead of %g s: %s",
                self.schedule.interval().seconds,
                self.config.every_s,
                why,
            )
        return self._budget_floor(self.schedule.interval().seconds)

    async def _learn_budget(self) -> None:
        """The upstream's daily budget: from RateLimit-Policy, else token_info once."""
        assert self.client is not None
        if self.transport.last_policy is None and not self._learned_budget:
            self._learned_budget = True
            info = await self.client.token_info()
            if info.token_limit > 0:
                self.budget.daily_budget = info.token_limit
                logger.info("the upstream token's daily limit is %d (token_info)", info.token_limit)

    def _account(self, sent_before: int, now: float) -> None:
        sent = self.transport.sent - sent_before
        budget = None if self.client is None else self.client.budget
        resets = None if budget is None else budget.resets_in_s
        self.budget.record(sent, now, resets)
        policy = self.transport.last_policy
        quotas = [int(q) for q in _QUOTA.findall(policy or "")]
        if quotas:
            self.budget.daily_budget = min(quotas)
        for result, count in self.transport.take_statuses().items():
            self.state.requests[result] += count

    def _budget_floor(self, wait: float) -> float:
        """Never call an upstream that said its budget is spent before it resets."""
        budget = None if self.client is None else self.client.budget
        if budget is not None and budget.remaining <= 0 and budget.resets_in_s is not None:
            return max(wait, float(budget.resets_in_s))
        return wait

    def _failed(self, error: Exception) -> float | None:
        reason = stale_reason(error)
        message = _describe(error)
        if reason == "upstream-token-refused":
            self.state.failed(reason, message, halt=True)
            logger.error(
                "the upstream %s refused the mirror's token (%s): syncing stopped; the last "
                "good copy is still served. Fix the token and restart the mirror.",
                self.config.url,
                message,
            )
            return None
        self.state.failed(reason, message)
        wait = self.schedule.retry_s(self.state.failures)
        if isinstance(error, errors.QuotaExceeded) and error.reset_at is not None:
            wait = max(wait, error.reset_at.timestamp() - time.time())
        wait = self._budget_floor(wait)
        logger.warning(
            "sync of %s failed (%s): serving the last good copy, next try in %d s",
            self.config.upstream_server,
            message,
            wait,
        )
        return wait
