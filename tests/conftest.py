"""Fixtures only: a store per test, the app in-process (ASGI) and on a real uvicorn server.

The helpers they use, and that tests use directly, live in `tests/support/`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from routing_points.clock import ManualClock
from routing_points.server import create_app
from routing_points.store import migrate
from routing_points.store.engine import create_sync_engine
from tests.support.browser import chromium
from tests.support.mirroring import Upstream, default_points, start_upstream
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, asgi_client, make_settings
from tests.support.services import (
    POSTGRES_ADMIN_URL,
    REDIS_TEST_URL,
    RedisNamespace,
    service_missing,
)
from tests.support.wire import SALES_LINE, SUPPORT_CHAT

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def browser_page() -> Iterator[Page]:
    """A fresh page of a real headless Chromium (tests/support/browser.py)."""
    with chromium() as browser:
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


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    """Operation 0032 in Bogota with API.md's two example records and a third, rp_id 1000."""
    return add_tenant(
        engine,
        "0032",
        [dict(SUPPORT_CHAT), dict(SALES_LINE), point(1000, "Night shift", interaction_active="no")],
        timezone="America/Bogota",
    )


@pytest.fixture
async def client(database_url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(make_settings(database_url))) as client:
        yield client


@pytest.fixture
def live(database_url: str, tenant: Tenant) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(database_url)).start()
    yield server
    server.stop()


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    """A second server of ours, with the default points, as a mirror's upstream."""
    up = start_upstream(tmp_path, default_points())
    yield up
    up.server.stop()
    up.engine.dispose()
