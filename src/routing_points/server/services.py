"""The server's long-lived parts, chosen from the settings and wired together once.

store   SQLite (embedded, one process)   or PostgreSQL (asyncpg pool)
limits  in this process (LocalLimits)     or Redis (RedisLimits, every worker and host)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from routing_points.clock import Clock
from routing_points.limits.backend import BackendUnavailable, LimitBackend
from routing_points.limits.local import LocalLimits
from routing_points.limits.policy import LimitPolicy
from routing_points.limits.redis import RedisLimits
from routing_points.server.addon import ServerAddon
from routing_points.server.admin import AdminEndpoints
from routing_points.server.admin_access import AccessEndpoints
from routing_points.server.admission import Admission
from routing_points.server.errors import ApiError
from routing_points.server.guard import ConsumptionGuard
from routing_points.server.incoming import query_params
from routing_points.server.information import InformationEndpoint
from routing_points.server.metrics import Metrics
from routing_points.server.pages import PageCache, PageRenderer
from routing_points.server.reports import ReportSources, make_reports
from routing_points.settings import Settings
from routing_points.store import migrate
from routing_points.store.engine import create_sync_engine
from routing_points.store.postgres import PostgresReader
from routing_points.store.reader import StoreUnavailable
from routing_points.store.refusals import RefusalLog
from routing_points.store.sqlite import SqliteReader


class NotStarted(RuntimeError):
    pass


class Services:
    def __init__(self, settings: Settings, clock: Clock, addon: ServerAddon | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.addon = addon
        self.metrics = Metrics(settings.metrics_token) if settings.metrics_token else None
        self.reader: SqliteReader | PostgresReader | None = None
        self.limits: LimitBackend | None = None
        self._endpoint: InformationEndpoint | None = None
        self._admin: AdminEndpoints | None = None
        self._access: AccessEndpoints | None = None
        self.engine: Engine | None = None
        self.tallies: RefusalLog | None = None
        self.page_cache: PageCache | None = None

    async def start(self) -> None:
        settings = self.settings
        if settings.is_sqlite:
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = self.engine = create_sync_engine(settings.database_url)
        migrate.upgrade(engine)
        reader: SqliteReader | PostgresReader
        if settings.is_sqlite:
            reader = SqliteReader(settings.sqlite_path)
        else:
            reader = await PostgresReader.connect(
                settings.database_url,
                min_size=1,
                max_size=settings.database_pool_size,
                timeout_s=settings.database_timeout_s,
            )
        self.reader = reader
        limits: LimitBackend
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
            if isinstance(reader, PostgresReader) and not await reader.hold_local_limits_lock():
                await reader.close()
                raise RuntimeError(
                    "another server keeps its limits in this database: give every server "
                    "the same --redis to run several"
                )
            limits = LocalLimits(reader)
        self.limits = limits
        policy = LimitPolicy(settings, limits, self.clock)
        tallies = self.tallies = RefusalLog(engine)
        policy.on_refusal = tallies.note
        # Charges need no copy: both limit backends write them through to the store's
        # usage counters (with Redis too: PostgreSQL is the durable record of the budget).
        tallies.start()
        admission = Admission(reader, policy)
        guard = ConsumptionGuard(settings)
        renderer = PageRenderer(
            reader, settings.max_records_per_response, settings.max_response_bytes
        )
        self.page_cache = PageCache(settings.body_cache_bytes)
        reports = make_reports(ReportSources(reader, renderer, self.page_cache))
        self._endpoint = InformationEndpoint(admission, reports, guard, self.metrics)
        self._admin = AdminEndpoints(settings, admission, guard, engine)
        self._access = AccessEndpoints(self._admin)

    async def stop(self) -> None:
        if self.tallies is not None:
            await self.tallies.stop()
            self.tallies = None
        if self.limits is not None:
            await self.limits.close()
        if self.reader is not None:
            await self.reader.close()
        if self.engine is not None:
            self.engine.dispose()
        self.reader = self.limits = self._endpoint = self._admin = self.engine = None
        self._access = self.page_cache = None

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
        return await self._measured(api, partial(endpoint, scope, receive))

    def admin_endpoint(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        """A route endpoint for one admin handler, bound once the services have started."""

        async def endpoint(request: Request) -> Response:
            if self._admin is None:
                raise NotStarted("the app's lifespan has not started")
            owner = self._access if hasattr(AccessEndpoints, name) else self._admin
            handler: Callable[[Request], Awaitable[Response]] = getattr(owner, name)
            if self.metrics is None:
                return await handler(request)
            return await self._measured("admin", partial(handler, request))

        return endpoint

    async def _measured(self, api: str, handler: Callable[[], Awaitable[Response]]) -> Response:
        assert self.metrics is not None
        started, status, refusal = time.perf_counter(), 500, None
        try:
            response = await handler()
            status = response.status_code
            return response
        except ApiError as exc:
            status, refusal = exc.status, exc.refusal
            raise
        except StoreUnavailable:
            status = 503
            raise
        finally:
            self.metrics.observe(api, status, time.perf_counter() - started, refusal)

    async def readiness(self, _request: Request) -> Response:
        checks: dict[str, Any] = {"store": "ok", "limits": "ok"}
        try:
            if self.reader is None or self.limits is None:
                raise NotStarted("starting")
            try:
                await self.reader.ping()
            except StoreUnavailable:
                checks["store"] = "unavailable"  # never the text: it names hosts
            try:
                await self.limits.ping()
            except BackendUnavailable:
                checks["limits"] = "unavailable"
        except NotStarted:
            checks = {"store": "starting", "limits": "starting"}
        ready = all(value == "ok" for value in checks.values())
        if self.addon is not None:
            addon_ready, checks[self.addon.name] = self.addon.readiness()
            ready = ready and addon_ready
        status = 200 if ready else 503
        body = {
            "code": status,
            "error": None if ready else "SERVICE UNAVAILABLE",
            "msg": "READY" if ready else "NOT READY",
            "data": checks,
        }
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")
