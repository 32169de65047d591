"""Fixtures: a store per test, the app in-process (ASGI) and on a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import psycopg
import pytest
import redis
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from routing_points.clock import ManualClock, system_clock
from routing_points.server import create_app
from routing_points.settings import Settings
from routing_points.store import admin, migrate
from routing_points.store import points as point_store
from routing_points.store.engine import create_sync_engine
from tests.browser import launch_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Page

ENDPOINT = "/api/v2/information.php"
RUNNING_IN_CI = os.environ.get("CI") == "true"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


POSTGRES_ADMIN_URL = os.environ.get(
    "ROUTING_POINTS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("ROUTING_POINTS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def service_missing(what: str, exc: BaseException) -> NoReturn:
    """Skip where the service is not installed; in CI a missing service is a failure."""
    if RUNNING_IN_CI:
        pytest.fail(f"{what} is required in CI and is not reachable: {exc}")
    pytest.skip(f"{what} is not reachable here ({exc}); CI runs these tests against it")


@pytest.fixture
def browser_page() -> Iterator[Page]:
    """A fresh page of a real headless Chromium (tests/browser.py)."""
    with contextlib.ExitStack() as stack:
        try:
            browser = stack.enter_context(launch_chromium())
        except FileNotFoundError as exc:
            service_missing("Chromium", exc)
        page = browser.new_page()
        yield page
        page.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own for this test, dropped afterwards."""
    name = f"rp_test_{secrets.token_hex(6)}"
    try:
        admin_connection = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", exc)
    with admin_connection:
        admin_connection.execute(f'CREATE DATABASE "{name}"')
    yield str(make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False))
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin_connection:
        admin_connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RedisNamespace:
    url: str
    prefix: str

    def settings(self) -> dict[str, Any]:
        return {"redis_url": self.url, "redis_key_prefix": self.prefix}


@pytest.fixture
def redis_namespace() -> Iterator[RedisNamespace]:
    """The shared Redis, under a key prefix of this test's own."""
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        service_missing("Redis", exc)
    prefix = f"rp-test-{secrets.token_hex(6)}"
    yield RedisNamespace(REDIS_TEST_URL, prefix)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default; tests parametrized with "postgresql" (indirect) get PostgreSQL."""
    store = getattr(request, "param", "sqlite")
    if store == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_sync_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@dataclass
class Tenant:
    """An operation with a token, seeded straight into the store."""

    server: str
    token: str
    token_id: int
    points: list[dict[str, Any]] = field(default_factory=list)


def point(rp_id: int, name: str | None = None, **flags: str) -> dict[str, Any]:
    return {
        "rp_id": str(rp_id),
        "rp_name": name or f"Point {rp_id}",
        "ivr_active": flags.get("ivr_active", "yes"),
        "chat_active": flags.get("chat_active", "no"),
        "interaction_active": flags.get("interaction_active", "yes"),
        "crm_active": flags.get("crm_active", "no"),
        "last_use": flags.get("last_use", ""),
    }


def add_tenant(
    engine: Engine,
    server: str,
    points: list[dict[str, Any]] | None = None,
    *,
    licenses: int = 1,
    timezone: str = "UTC",
    daily_limit: int | None = None,
) -> Tenant:
    with contextlib.suppress(admin.Conflict):
        admin.add_operation(engine, server, f"Operation {server}", licenses, timezone)
    token = admin.add_token(engine, server, f"token of {server}", daily_limit)
    points = points if points is not None else []
    if points:
        point_store.upsert_points(engine, server, points)
    return Tenant(server, token.secret, token.id, points)


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return add_tenant(
        engine,
        "0032",
        [
            point(102, "Support chat", ivr_active="no", chat_active="yes", crm_active="yes"),
            point(101, "Sales line", crm_active="no", last_use="2026-11-20 14:03:11"),
            point(1000, "Night shift", interaction_active="no"),
        ],
        timezone="America/Bogota",
    )


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, access_log=False, **overrides)


@contextlib.asynccontextmanager
async def asgi_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, lifespan included, through httpx's ASGI transport."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
async def client(database_url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(make_settings(database_url))) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A real uvicorn server on 127.0.0.1, in a thread of the test process.

    Requests cross a real socket and the real HTTP stack; the clock stays injectable.
    """

    def __init__(self, settings: Settings, clock: Any = system_clock, wrap: Any = None) -> None:
        self.settings = settings
        self.clock = clock
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, clock=clock)
        self.asgi = self.app if wrap is None else wrap(self.app)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        config = uvicorn.Config(
            self.asgi, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
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
            key = f"{self.settings.redis_key_prefix}:slots:{token_id}"
            return int(client.zcount(key, f"({now_ms}", "+inf"))
        finally:
            client.close()


@pytest.fixture
def live(database_url: str, tenant: Tenant) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(database_url)).start()
    yield server
    server.stop()


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock(time.time())


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
