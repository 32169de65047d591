"""The budget through Redis faults: killed mid-load, restarted, stalled; PostgreSQL black-holed.

Each test states its figure (calls admitted against the budget, seconds to answer) in its
own assertion. Redis is a redis-server of the test's own, so it can be killed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from routing_points.store import tenants
from tests.support.faults import PrivateRedis, TcpProxy
from tests.support.seed import add_tenant, point
from tests.support.servers import LiveServer, headers, make_settings
from tests.support.services import RedisNamespace
from tests.support.wire import ENDPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.anyio,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

POINTS = f"{ENDPOINT}?api=routing_points"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def charged(engine: Engine, server: str) -> int:
    """The calls PostgreSQL, the durable record, holds for the operation (all days)."""
    with engine.connect() as connection:
        total = connection.execute(
            text(
                "SELECT COALESCE(SUM(u.count), 0) FROM usage_counters u "
                "JOIN operations o ON o.id = u.operation_id WHERE o.nomenclature = :server"
            ),
            {"server": server},
        ).scalar_one()
    return int(total)


async def test_redis_killed_mid_load_never_overshoots_the_budget(
    database_url: str, engine: Engine, private_redis: PrivateRedis
) -> None:
    budget, clients = 300, 16
    add_tenant(engine, "0032", [point(1)])
    tokens = [tenants.add_token(engine, "0032", f"t{i}").secret for i in range(clients)]
    settings = make_settings(
        database_url,
        redis_url=private_redis.url,
        redis_timeout_s=0.5,
        daily_calls_per_license=budget,
        slot_lease_s=1,  # the wait after Redis comes back without its data: one lease
    )
    server = LiveServer(settings).start()
    admitted = 0
    killed = asyncio.Event()
    a_third_spent = asyncio.Event()

    async def client(http: httpx.AsyncClient, token: str) -> None:
        nonlocal admitted
        while True:
            response = await http.get(POINTS, headers=headers(token))
            if response.status_code == 200:
                admitted += 1
                if admitted >= budget // 3:
                    a_third_spent.set()
            elif response.json()["msg"] == "TOKEN LIMIT EXCEEDED":
                return
            else:  # our own outage: 503, and nothing charged
                assert response.status_code == 503
                await asyncio.sleep(0.05)

    async def killer() -> None:
        await a_third_spent.wait()
        private_redis.kill()
        killed.set()
        await asyncio.sleep(0.5)
        private_redis.start()

    try:
        # Idle connections dropped before the server's 5 s keep-alive does: a request on
        # one the server was closing at that instant failed (ReadError), whatever the budget.
        limits = httpx.Limits(keepalive_expiry=2)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            await asyncio.gather(killer(), *(client(http, token) for token in tokens))
    finally:
        server.stop()
    assert killed.is_set()
    # The bound: the calls in flight when Redis died (at most one per client here).
    assert budget <= admitted <= budget + clients, f"{admitted} admitted against {budget}"
    assert charged(engine, "0032") == admitted


async def test_a_restarted_redis_is_refilled_and_its_stale_connections_retried(
    database_url: str, engine: Engine, private_redis: PrivateRedis
) -> None:
    add_tenant(engine, "0032", [point(1)])
    tokens = [tenants.add_token(engine, "0032", f"t{i}").secret for i in range(8)]
    lease_s = 1.0
    settings = make_settings(
        database_url,
        redis_url=private_redis.url,
        redis_timeout_s=0.5,
        daily_calls_per_license=20,
        slot_lease_s=lease_s,
    )
    server = LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            # Eight at once: eight pooled Redis connections, all stale after the restart.
            before = await asyncio.gather(*(http.get(POINTS, headers=headers(t)) for t in tokens))
            assert [r.status_code for r in before] == [200] * 8
            private_redis.stop()
            private_redis.start()
            waiting = await asyncio.gather(*(http.get(POINTS, headers=headers(t)) for t in tokens))
            # Every stale connection was retried on a fresh one, and Redis answered: not
            # "unavailable", but the wait for running calls to put back their slots.
            assert {(r.status_code, r.json()["msg"]) for r in waiting} == {
                (503, "THE LIMITS SERVICE IS RECOVERING THE SLOTS OF RUNNING CALLS")
            }
            await asyncio.sleep(lease_s)
            after = await asyncio.gather(*(http.get(POINTS, headers=headers(t)) for t in tokens))
            assert [r.status_code for r in after] == [200] * 8
            rest = [
                (await http.get(POINTS, headers=headers(tokens[0]))).status_code for _ in range(8)
            ]
    finally:
        server.stop()
    # 16 of 20 spent before these 8: 4 more admitted, the day's count refilled from PostgreSQL.
    assert rest == [200] * 4 + [403] * 4, rest
    assert charged(engine, "0032") == 20


async def test_a_redis_that_lost_its_data_runs_no_call_beyond_the_limit(
    database_url: str, engine: Engine, private_redis: PrivateRedis
) -> None:
    """Redis restarted without its data while a token's two calls ran: its slots were gone
    with it, yet no third call runs until those two end. Admissions wait one lease for the
    running calls to put their leases back, then the limit holds on the restored slots."""
    tenant = add_tenant(engine, "0032", [point(1)])
    lease_s, call_s = 1.5, 6.0
    settings = make_settings(
        database_url,
        redis_url=private_redis.url,
        redis_timeout_s=0.5,
        slot_lease_s=lease_s,
        sandbox_latency_ms=call_s * 1000,
    )
    server = LiveServer(settings).start()
    admin: Any = redis.Redis(port=private_redis.port)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            held = [
                asyncio.ensure_future(http.get(POINTS, headers=headers(tenant.token)))
                for _ in range(2)
            ]
            for _ in range(200):  # both admitted: two leases in Redis
                if sum(admin.zcard(key) for key in admin.keys("*:slots:*")) == 2:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the two calls were not admitted within 10 s")
            started = time.monotonic()
            private_redis.kill()
            private_redis.start()
            # Until the two end, every other call of the token is refused: first while the
            # slots are put back (503), then by the limit itself (403).
            refused = []
            while time.monotonic() - started < call_s - 2.5:
                refused.append(await http.get(POINTS, headers=headers(tenant.token)))
                await asyncio.sleep(0.1)
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            after = await http.get(POINTS, headers=headers(tenant.token))
    finally:
        admin.close()
        server.stop()
    messages = [(r.status_code, r.json()["msg"]) for r in refused]
    assert (503, "THE LIMITS SERVICE IS RECOVERING THE SLOTS OF RUNNING CALLS") in messages
    assert messages[-1] == (403, "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)")
    assert set(messages) <= {
        (503, "THE LIMITS SERVICE IS RECOVERING THE SLOTS OF RUNNING CALLS"),
        (403, "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)"),
    }, f"{len(messages)} calls while two ran: {sorted(set(messages))}"
    assert after.status_code == 200


async def test_a_stalled_redis_charges_nothing_and_strands_no_slot(
    database_url: str, engine: Engine, private_redis: PrivateRedis
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    proxy = TcpProxy("127.0.0.1", private_redis.port).start()
    settings = make_settings(
        database_url, redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_timeout_s=0.5
    )
    server = LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
            proxy.stall()
            started = time.monotonic()
            stalled = await asyncio.gather(
                *(http.get(POINTS, headers=headers(tenant.token)) for _ in range(2))
            )
            waited = time.monotonic() - started
            assert [r.status_code for r in stalled] == [503, 503]
            assert waited < 5, f"a stalled Redis answered 503 after {waited:.1f} s"
            # Redis runs the queued scripts once the network flows again; their undo too.
            proxy.restore()
            await asyncio.sleep(2)
            # Both slots are free at once, and the two 503s cost nothing.
            pair = await asyncio.gather(
                *(http.get(POINTS, headers=headers(tenant.token)) for _ in range(2))
            )
            assert [r.status_code for r in pair] == [200, 200]
            info = await http.get(f"{ENDPOINT}?api=token_info", headers=headers(tenant.token))
    finally:
        server.stop()
        proxy.close()
    left = int(info.headers["ratelimit"].split("r=")[1].split(";")[0])
    # 1 + 2 + token_info admitted: 4 of 1,000 used, 996 left; the two 503s were not charged.
    assert (left, charged(engine, "0032")) == (996, 4)


async def test_a_black_holed_postgres_answers_503_within_seconds(
    database_url: str, engine: Engine, redis_namespace: RedisNamespace
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    settings = make_settings(through_proxy, database_timeout_s=1, **redis_namespace.settings())
    server = LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            # A token not yet cached: the lookup itself must hit the black hole.
            other = tenants.add_token(engine, "0032", "second").secret
            assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
            proxy.stall()
            started = time.monotonic()
            down = await asyncio.gather(
                http.get(POINTS, headers=headers(tenant.token)),
                http.get(POINTS, headers=headers(other)),
            )
            waited = time.monotonic() - started
            assert [r.status_code for r in down] == [503, 503]
            assert waited < 5, f"a black-holed store answered 503 after {waited:.1f} s"
            proxy.restore()
            statuses = []
            for _ in range(30):
                statuses.append((await http.get(POINTS, headers=headers(other))).status_code)
                if statuses[-1] == 200:
                    break
                await asyncio.sleep(0.2)
            assert statuses[-1] == 200
    finally:
        server.stop()
        proxy.close()
