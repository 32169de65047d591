"""The server's long-lived parts, opened in the app's lifespan and wired together once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from routing_points.clock import Clock
from routing_points.limits.embedded import EmbeddedLimits
from routing_points.limits.policy import LimitPolicy
from routing_points.server.admission import Admission
from routing_points.server.guard import ConsumptionGuard
from routing_points.server.pages import PageCache, PageRenderer
from routing_points.server.routes import InformationEndpoint
from routing_points.settings import Settings
from routing_points.store import migrate
from routing_points.store.engine import create_sync_engine
from routing_points.store.sqlite import SqliteReader


class NotStarted(RuntimeError):
    pass


class Services:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._endpoint: InformationEndpoint | None = None
        self._reader: SqliteReader | None = None
        self.limits: EmbeddedLimits | None = None

    async def start(self) -> None:
        settings = self.settings
        if not settings.is_sqlite:
            raise NotImplementedError("only the embedded SQLite store is available so far")
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_sync_engine(settings.database_url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        reader = self._reader = SqliteReader(settings.sqlite_path)
        limits = self.limits = EmbeddedLimits(reader.loop_connection)
        policy = LimitPolicy(settings, limits, self.clock)
        self._endpoint = InformationEndpoint(
            Admission(reader, policy),
            PageRenderer(reader, settings.max_records_per_response, settings.max_response_bytes),
            PageCache(settings.body_cache_bytes),
            ConsumptionGuard(settings),
        )

    @property
    def reader(self) -> SqliteReader | None:
        return self._reader

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        self._reader = self._endpoint = self.limits = None

    async def information(self, request: Request) -> Response:
        if self._endpoint is None:
            raise NotStarted("the app's lifespan has not started")
        return await self._endpoint(request)
