"""The composition root: the server's long-lived parts, chosen from the settings and wired
together once, when the app's lifespan starts.

store   SQLite (embedded, one process)   or PostgreSQL (asyncpg pool)   store.factory
limits  in this process (LocalLimits)     or Redis (RedisLimits, every worker and host)

Every call that consumes, report or admin, then goes through `Admission.handle`.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from routing_points.clock import Clock
from routing_points.limits.backend import LimitBackend
from routing_points.limits.local import LocalLimits
from routing_points.limits.policy import LimitPolicy
from routing_points.limits.redis import RedisLimits
from routing_points.server.addon import ServerAddon
from routing_points.server.admin_access import AccessEndpoints
from routing_points.server.admin_api import AdminApi
from routing_points.server.admin_points import PointEndpoints
from routing_points.server.admission import Admission, NotStarted
from routing_points.server.guard import ConsumptionGuard
from routing_points.server.incoming import query_params
from routing_points.server.information import InformationEndpoint
from routing_points.server.metrics import Metrics, measured
from routing_points.server.pages import PageCache, PageRenderer
from routing_points.server.readiness import readiness
from routing_points.server.reports import ReportSources, make_reports
from routing_points.settings import Settings
from routing_points.store.factory import LIMITS_LOCK_REFUSED, Store, open_store
from routing_points.store.postgres import PostgresReader
from routing_points.store.reader import StoreUnavailable
from routing_points.store.refusals import RefusalLog
from routing_points.store.sqlite import SqliteReader

__all__ = ["NotStarted", "Services"]


class Services:
    def __init__(self, settings: Settings, clock: Clock, addon: ServerAddon | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.addon = addon
        self.metrics = Metrics(settings.metrics_token) if settings.metrics_token else None
        self.reader: SqliteReader | PostgresReader | None = None
        self.limits: LimitBackend | None = None
        self._endpoint: InformationEndpoint | None = None
        self.engine: Engine | None = None
        self.store: Store | None = None
        self.tallies: RefusalLog | None = None
        self.page_cache: PageCache | None = None
        self.renderer: PageRenderer | None = None
        # The admin API's endpoints exist with the app (its routes are bound to them);
        # they serve once `start` has bound them to the store.
        self.admin = AdminApi(settings, self.metrics)
        self.points = PointEndpoints(self.admin)
        self.access = AccessEndpoints(self.admin)

    async def start(self) -> None:
        store = self.store = await open_store(self.settings)
        try:
            await self._start(store)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, store: Store) -> None:
        settings = self.settings
        engine, reader = self.engine, self.reader = store.engine, store.reader
        limits: LimitBackend
        shared = settings.redis_url is not None
        if isinstance(reader, PostgresReader) and not await reader.hold_limits_lock(shared=shared):
            raise RuntimeError(LIMITS_LOCK_REFUSED[shared].format(where="this database"))
        if settings.redis_url:
            limits = RedisLimits.from_url(
                settings.redis_url,
                settings.redis_key_prefix,
                settings.redis_timeout_s,
                reader,
                settings.slot_lease_s,
                cluster=settings.redis_cluster,
            )
        else:
            limits = LocalLimits(reader)
        self.limits = limits
        policy = LimitPolicy(settings, limits, self.clock)
        tallies = self.tallies = RefusalLog(engine)
        policy.on_refusal = tallies.note
        # Charges need no copy: both limit backends write them through to the store's
        # usage counters (with Redis too: PostgreSQL is the durable record of the budget).
        tallies.start()
        admission = Admission(reader, policy, ConsumptionGuard(settings), self.metrics)
        renderer = self.renderer = PageRenderer(
            reader, settings.max_records_per_response, settings.max_response_bytes
        )
        self.page_cache = PageCache(settings.body_cache_bytes)
        reports = make_reports(ReportSources(reader, renderer, self.page_cache))
        self._endpoint = InformationEndpoint(admission, reports)
        self.admin.start(admission, engine)

    async def stop(self) -> None:
        self.admin.stop()
        if self.tallies is not None:
            await self.tallies.stop()
            self.tallies = None
        if self.limits is not None:
            await self.limits.close()
        if self.renderer is not None:
            await self.renderer.close()  # records still being kept: before the store closes
            self.renderer = None
        if self.store is not None:
            await self.store.close()  # the reader, the engine, and the SQLite file's lock
        self.reader = self.limits = self._endpoint = self.engine = self.page_cache = None
        self.store = None

    def forget_principals(self) -> None:
        """After a write outside the admin API (the console's): this worker's next request
        looks its token up afresh, so it sees what was changed at once."""
        if self.reader is not None:
            self.reader.forget_principals()

    async def count_charges(self) -> None:
        """Have the usage counters count every charge made so far, for a reader that must
        see them all (the console): the embedded store folds its ledger within 50 ms
        otherwise. A store that cannot be written leaves the counters as they are."""
        fold = getattr(self.reader, "fold_charges", None)
        if fold is not None:
            with contextlib.suppress(StoreUnavailable):
                await fold()

    async def information(self, request: Request) -> Response:
        return await self.respond(request.scope, request.receive)

    async def respond(self, scope: Scope, receive: Receive) -> Response:
        """The answer to information.php: the fast path calls this without a Request."""
        endpoint = self._endpoint
        if endpoint is None:
            raise NotStarted("the app's lifespan has not started")
        if self.metrics is None:
            return await endpoint(scope, receive)
        api = query_params(scope["query_string"]).get("api", "")
        return await measured(self.metrics, api, lambda: endpoint(scope, receive))

    async def readiness(self, _request: Request) -> Response:
        return await readiness(self.reader, self.limits, self.addon)
