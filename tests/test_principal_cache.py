"""Each PostgreSQL worker caches tokens, and forgets them when PostgreSQL says they changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine

from routing_points.store import points as point_store
from routing_points.store import tenants
from routing_points.store.postgres import PostgresReader
from routing_points.store.secrets import hash_secret
from tests.support.seed import add_tenant, point

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


@pytest.fixture
async def reader(database_url: str, engine: Engine) -> AsyncIterator[PostgresReader]:
    reader = await PostgresReader.connect(database_url, 1, 2, 5.0)
    try:
        for _ in range(200):  # the listening connection comes up in the background
            if reader.principals.listening:
                break
            await asyncio.sleep(0.01)
        assert reader.principals.listening
        yield reader
    finally:
        await reader.close()


async def changed_within(reader: PostgresReader, secret: str, bound_s: float) -> float:
    """Seconds until the reader's answer for the token differs from its cached one."""
    before = await reader.principal(hash_secret(secret))
    started = time.monotonic()
    while time.monotonic() - started < bound_s:
        if await reader.principal(hash_secret(secret)) != before:
            return time.monotonic() - started
        await asyncio.sleep(0.005)
    return float("inf")


async def test_a_warm_token_costs_no_round_trip(engine: Engine, reader: PostgresReader) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    await asyncio.sleep(0.3)  # the notifications of the tenant's own creation have arrived
    lookups = 0
    lookup = reader.principals._lookup

    async def counted(secret_hash: str) -> object:
        nonlocal lookups
        lookups += 1
        return await lookup(secret_hash)

    reader.principals._lookup = counted  # type: ignore[assignment]
    for _ in range(50):
        principal = await reader.principal(hash_secret(tenant.token))
        assert principal is not None
    assert lookups == 1  # 50 requests, one PostgreSQL round trip
    assert await reader.principal(hash_secret("made-up")) is None
    assert await reader.principal(hash_secret("made-up")) is None
    assert lookups == 3  # unknown tokens are never cached


async def test_a_revocation_and_a_change_are_seen_within_a_second(
    engine: Engine, reader: PostgresReader
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    version = (await reader.principal(hash_secret(tenant.token))).version  # type: ignore[union-attr]
    watch = asyncio.ensure_future(changed_within(reader, tenant.token, 1.0))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(point_store.set_point, engine, "0032", 1, {"rp_name": "After"})
    seen_after_s = await watch
    assert seen_after_s < 1.0, f"a point change was seen after {seen_after_s} s"
    principal = await reader.principal(hash_secret(tenant.token))
    assert principal is not None
    assert principal.version > version
    watch = asyncio.ensure_future(changed_within(reader, tenant.token, 1.0))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(tenants.revoke_token, engine, tenant.token_id)
    refused_after_s = await watch
    assert refused_after_s < 1.0, f"a revoked token was still served after {refused_after_s} s"
    assert await reader.principal(hash_secret(tenant.token)) is None


async def test_without_its_listener_the_cache_keeps_nothing(
    engine: Engine, reader: PostgresReader
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    assert reader._listener is not None
    await reader._listener.close()  # as if the listening connection were lost for good
    assert not reader.principals.listening
    assert await reader.principal(hash_secret(tenant.token)) is not None
    assert len(reader.principals) == 0
    await asyncio.to_thread(tenants.revoke_token, engine, tenant.token_id)
    assert await reader.principal(hash_secret(tenant.token)) is None  # at once
