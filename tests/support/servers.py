"""The app in-process (ASGI) and on a real uvicorn server, and requests against them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import redis
import uvicorn
from starlette.applications import Starlette

from routing_points.clock import system_clock
from routing_points.server import create_app
from routing_points.server.protocol import bounded_protocol
from routing_points.settings import Settings
from tests.support.services import RedisNamespace, free_port


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, access_log=False, **overrides)


def server_env(redis_namespace: RedisNamespace, **settings: Any) -> dict[str, str]:
    """Environment of a server process: this test's Redis prefix, no access log, `settings`."""
    env = {
        "ROUTING_POINTS_REDIS_KEY_PREFIX": redis_namespace.prefix,
        "ROUTING_POINTS_ACCESS_LOG": "false",
    }
    if redis_namespace.cluster:
        env["ROUTING_POINTS_REDIS_CLUSTER"] = "true"
    env.update({f"ROUTING_POINTS_{key.upper()}": str(value) for key, value in settings.items()})
    return env


@contextlib.asynccontextmanager
async def asgi_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, lifespan included, through httpx's ASGI transport."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


class LiveServer:
    """A real uvicorn server on 127.0.0.1, in a thread of the test process.

    Requests cross a real socket and the real HTTP stack; the clock stays injectable.
    """

    def __init__(
        self, settings: Settings, clock: Any = system_clock, wrap: Any = None, addon: Any = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, clock=clock, addon=addon)
        self.asgi = self.app if wrap is None else wrap(self.app)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        config = uvicorn.Config(
            self.asgi,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            http=bounded_protocol(self.settings),
            proxy_headers=False,  # as `serve` runs it
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def limits(self) -> Any:
        return self.app.state.services.limits

    def in_flight(self, token_id: int) -> int:
        """Slots the token holds now, whichever backend keeps them."""
        limits = self.limits
        if hasattr(limits, "in_flight"):
            return int(limits.in_flight(token_id))
        client = redis.Redis.from_url(self.settings.redis_url or "")
        try:
            seconds, micros = client.time()
            now_ms = seconds * 1000 + micros // 1000
            # Slots live under their operation's hash tag: {prefix}:{o<op>}:slots:<token>.
            pattern = f"{self.settings.redis_key_prefix}:{{o*}}:slots:{token_id}"
            keys = list(client.scan_iter(pattern))
            return sum(int(client.zcount(key, f"({now_ms}", "+inf")) for key in keys)
        finally:
            client.close()


class SpanRecorder:
    """ASGI wrapper noting when each request was being served and how it ended."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.spans: list[tuple[float, float, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), 0

        async def record(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, record)
        self.spans.append((started, time.monotonic(), status))


def max_overlap(spans: list[tuple[float, float, int]]) -> int:
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


@contextlib.contextmanager
def token_lookups_held(app: Starlette) -> Iterator[None]:
    """The app's tokens stay as last looked up (its store's check for changes held off,
    as when PostgreSQL's notification is late), then catch up."""
    reader = app.state.services.reader
    reader._checked_at = float("inf")
    try:
        yield
    finally:
        reader._checked_at = float("-inf")


def headers(token: str, **extra: str) -> dict[str, str]:
    return {"wolkvox-token": token, **extra}


async def gather_gets(
    url: str, count: int, request_headers: dict[str, str], client_timeout: float = 30
) -> list[httpx.Response]:
    """`count` simultaneous requests, each on its own connection."""
    limits = httpx.Limits(max_connections=count + 1, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=client_timeout) as http:
        return list(
            await asyncio.gather(*(http.get(url, headers=request_headers) for _ in range(count)))
        )
