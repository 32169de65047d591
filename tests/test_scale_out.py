"""Many workers on PostgreSQL and Redis: exact limits across processes, and faults survived."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from routing_points.store import points as point_store
from routing_points.store import tenants
from tests.support.faults import PrivateRedis, RedisClusterNodes, TcpProxy
from tests.support.processes import ServerProcess, cli
from tests.support.seed import add_tenant, point
from tests.support.servers import LiveServer, headers, make_settings, server_env
from tests.support.services import RedisNamespace, free_port
from tests.support.wire import ENDPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

POINTS = f"{ENDPOINT}?api=routing_points"
TOKEN_INFO = f"{ENDPOINT}?api=token_info"


@pytest.fixture(params=["redis", "redis-cluster"])
def shared_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisNamespace]:
    """The shared Redis under a prefix of the test's own, or a 3-node Redis Cluster of its own."""
    if request.param == "redis":
        yield request.getfixturevalue("redis_namespace")
        return
    nodes = RedisClusterNodes(tmp_path / "cluster").start()
    try:
        yield RedisNamespace(nodes.url, "rp", cluster=True)
    finally:
        nodes.stop()


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for process in started:
        process.stop()


def serve(
    processes: list[ServerProcess],
    database_url: str,
    redis_namespace: RedisNamespace,
    *extra: str,
    **settings: Any,
) -> ServerProcess:
    process = ServerProcess(
        "serve",
        "--database",
        database_url,
        "--redis",
        redis_namespace.url,
        *extra,
        port=free_port(),
        env=server_env(redis_namespace, **settings),
    )
    processes.append(process)
    return process.wait_ready()


async def spread(urls: list[str], tokens: list[str], count: int) -> list[httpx.Response]:
    """`count` simultaneous calls, alternating between the servers and the tokens."""
    limits = httpx.Limits(max_connections=count + 1, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        return list(
            await asyncio.gather(
                *(
                    http.get(urls[i % len(urls)] + POINTS, headers=headers(tokens[i % len(tokens)]))
                    for i in range(count)
                )
            )
        )


def test_limits_are_exact_across_two_servers_of_two_workers(
    database_url: str,
    engine: Engine,
    shared_redis: RedisNamespace,
    processes: list[ServerProcess],
) -> None:
    hot = add_tenant(engine, "0032", [point(1)])
    crowd = add_tenant(engine, "0033", [point(1)])
    crowd_tokens = [tenants.add_token(engine, "0033", f"t{i}").secret for i in range(80)]
    assert crowd.token
    settings = {"sandbox_latency_ms": 1500, "daily_calls_per_license": 30}
    servers = [
        serve(processes, database_url, shared_redis, "--workers", "2", **settings) for _ in range(2)
    ]
    urls = [server.url for server in servers]
    one_token = asyncio.run(spread(urls, [hot.token], 50))
    statuses = sorted(r.status_code for r in one_token)
    assert statuses == [200, 200] + [403] * 48
    assert {r.json()["msg"] for r in one_token if r.status_code == 403} == {
        "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)"
    }
    # One call through each server first, so both hold part of the day's 30 whichever
    # server wins the races below (on a loaded machine one of them may win them all).
    with httpx.Client(timeout=30) as http:
        firsts = [
            http.get(url + POINTS, headers=headers(crowd_tokens[i])) for i, url in enumerate(urls)
        ]
    assert [r.status_code for r in firsts] == [200, 200]
    budget = asyncio.run(spread(urls, crowd_tokens[2:], 78))
    assert sum(r.status_code == 200 for r in budget) == 28
    refused = [r for r in budget if r.status_code != 200]
    assert len(refused) == 50
    assert {r.json()["msg"] for r in refused} == {"TOKEN LIMIT EXCEEDED"}


def test_every_worker_logs_as_a_lone_server_does(
    database_url: str, engine: Engine, redis_namespace: RedisNamespace
) -> None:
    """Workers are fresh interpreters: they logged nothing under WARNING (no access log)
    and that bare, whatever ROUTING_POINTS_LOG_FORMAT said."""
    tenant = add_tenant(engine, "0032", [point(1)])
    env = server_env(redis_namespace, access_log="true", log_format="json")
    server = ServerProcess(
        "serve",
        "--database",
        database_url,
        "--redis",
        redis_namespace.url,
        "--workers",
        "2",
        port=free_port(),
        env=env,
    ).wait_ready()
    try:
        for _ in range(4):  # a connection each: either worker may answer
            response = httpx.get(server.url + POINTS, headers=headers(tenant.token), timeout=30)
            assert response.status_code == 200
    finally:
        assert server.stop()
    lines = [orjson.loads(line) for line in server.logged.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "routing_points.access"]
    assert [(line["target"], line["status"]) for line in access] == [(POINTS, 200)] * 4
    # Every line a JSON object with its time: the workers' and the parent's alike.
    assert all(line["time"] and line["level"] for line in lines)
    assert (
        len({line["msg"] for line in lines if line["msg"].startswith("Started server process")})
        == 2
    )


def test_a_killed_server_frees_its_slot_within_the_lease(
    database_url: str,
    engine: Engine,
    shared_redis: RedisNamespace,
    processes: list[ServerProcess],
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    limits = {"max_in_flight_per_token": 1, "slot_lease_s": 3}
    # The doomed server's call would run 30 s: only the lease brings its slot back sooner.
    doomed = serve(processes, database_url, shared_redis, sandbox_latency_ms=30_000, **limits)
    survivor = serve(processes, database_url, shared_redis, **limits)

    async def hold_then_kill() -> float:
        async with httpx.AsyncClient(timeout=30) as http:
            held = asyncio.create_task(http.get(doomed.url + POINTS, headers=headers(tenant.token)))
            await asyncio.sleep(4)  # longer than the lease: the live holder renewed it
            doomed.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            with pytest.raises(httpx.HTTPError):
                await held
            return killed_at

    killed_at = asyncio.run(hold_then_kill())
    doomed.process.wait()
    answers = []
    with httpx.Client(base_url=survivor.url) as http:
        while time.monotonic() - killed_at < 10:
            answers.append(http.get(POINTS, headers=headers(tenant.token)))
            if answers[-1].status_code == 200:
                break
            time.sleep(0.05)
    freed_after = time.monotonic() - killed_at
    # Held while the dead worker's lease lived (3 s), usable once it ran out.
    assert answers[0].status_code in (403, 503)  # refused: the slot is still held
    assert answers[-1].status_code == 200
    assert freed_after < 3 + 3, f"the dead worker's slot came back after {freed_after:.1f} s"
    # Once its holder had missed its renewals, the refusal no longer blamed the client.
    refusals = [a.json()["msg"] for a in answers[:-1]]
    assert refusals[-1] == "A SLOT HELD BY A STOPPED SERVER IS BEING RECLAIMED"
    assert set(refusals) <= {
        "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (1)",
        "A SLOT HELD BY A STOPPED SERVER IS BEING RECLAIMED",
    }


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("fail_open", [False, True])
async def test_redis_down_then_back(
    database_url: str, engine: Engine, private_redis: PrivateRedis, fail_open: bool
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    lease_s = 1.0
    settings = make_settings(
        database_url,
        redis_url=private_redis.url,
        redis_fail_open=fail_open,
        redis_timeout_s=0.5,
        slot_lease_s=lease_s,
    )
    server = LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
            assert (await http.get("/readyz")).status_code == 200
            private_redis.stop()
            down = await http.get(POINTS, headers=headers(tenant.token))
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["data"]["store"] == "ok"
            assert ready.json()["data"]["limits"] != "ok"
            assert (await http.get("/healthz")).status_code == 200
            if fail_open:
                assert down.status_code == 200
                assert down.headers["x-limits"] == "degraded"
                assert "ratelimit" not in down.headers
            else:
                assert down.status_code == 503
                assert down.json() == {
                    "code": 503,
                    "error": "SERVICE UNAVAILABLE",
                    "msg": "THE LIMITS SERVICE IS UNAVAILABLE",
                    "data": None,
                }
            private_redis.start()
            # Redis came back without the day's counters (nor the slots of calls that were
            # running): one lease without limits (open) or refused (closed) while they are
            # put back, then exact again.
            recovering = await http.get(POINTS, headers=headers(tenant.token))
            if fail_open:
                assert recovering.status_code == 200
                assert recovering.headers["x-limits"] == "degraded"
            else:
                assert recovering.status_code == 503
                assert recovering.headers["retry-after"] == "1"
                assert recovering.json()["msg"] == (
                    "THE LIMITS SERVICE IS RECOVERING THE SLOTS OF RUNNING CALLS"
                )
            await asyncio.sleep(lease_s)
            back = await http.get(POINTS, headers=headers(tenant.token))
            assert back.status_code == 200
            assert "x-limits" not in back.headers
            # No slot was left stuck: two at once are both served.
            pair = await asyncio.gather(
                *(http.get(POINTS, headers=headers(tenant.token)) for _ in range(2))
            )
            assert [r.status_code for r in pair] == [200, 200]
    finally:
        server.stop()


@pytest.mark.anyio
async def test_postgres_down_then_back(
    database_url: str, engine: Engine, redis_namespace: RedisNamespace
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    settings = make_settings(through_proxy, database_timeout_s=1, **redis_namespace.settings())
    server = LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
            proxy.cut()
            down = await http.get(POINTS, headers=headers(tenant.token))
            assert down.status_code == 503
            assert down.json()["msg"] == "THE STORE IS UNAVAILABLE"
            assert down.json()["data"] is None
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["data"]["store"] != "ok"
            proxy.restore()
            statuses = []
            for _ in range(20):
                statuses.append((await http.get(POINTS, headers=headers(tenant.token))).status_code)
                if statuses[-1] == 200:
                    break
                await asyncio.sleep(0.1)
            assert statuses[-1] == 200
            assert (await http.get("/readyz")).status_code == 200
    finally:
        server.stop()
        proxy.close()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_across_workers(
    database_url: str,
    engine: Engine,
    redis_namespace: RedisNamespace,
    processes: list[ServerProcess],
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    server = serve(
        processes, database_url, redis_namespace, "--workers", "2", metrics_token="scrape-me"
    )
    # A new connection each time, so the calls (and the scrapes) spread over both workers.
    fresh = {"connection": "close"}
    with httpx.Client(base_url=server.url) as http:
        for _ in range(6):
            assert http.get(POINTS, headers=headers(tenant.token, **fresh)).status_code == 200
        for _ in range(2):
            assert http.get(TOKEN_INFO, headers=headers(tenant.token, **fresh)).status_code == 200
        assert http.get(POINTS, headers=headers("wrong", **fresh)).status_code == 403
        assert http.get("/metrics", headers=fresh).status_code == 403
        assert http.get("/metrics", headers={"authorization": "Bearer nope"}).status_code == 403
        scrapes = [
            http.get("/metrics", headers={"authorization": "Bearer scrape-me", **fresh})
            for _ in range(6)
        ]
    requests = "routing_points_requests_total"
    for page in scrapes:
        assert page.status_code == 200
        samples = metric_samples(page.text)
        assert samples[(requests, (("api", "routing_points"), ("status", "200")))] == 6
        assert samples[(requests, (("api", "token_info"), ("status", "200")))] == 2
        assert samples[(requests, (("api", "routing_points"), ("status", "403")))] == 1
        assert samples[("routing_points_consumptions_total", (("operation", "0032"),))] == 8
        assert samples[("routing_points_budget_used", (("operation", "0032"),))] == 8
        assert (
            samples[("routing_points_request_duration_seconds_count", (("api", "routing_points"),))]
            == 7
        )


def test_metrics_are_off_without_a_secret(live: LiveServer) -> None:
    response = httpx.get(f"{live.url}/metrics")
    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_refusals_by_reason_in_metrics(database_url: str, engine: Engine) -> None:
    tenant = add_tenant(engine, "0032", [point(1)], daily_limit=1)
    server = LiveServer(make_settings(database_url, metrics_token="m")).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            http.get(POINTS, headers=headers(tenant.token))
            http.get(POINTS, headers=headers(tenant.token))
            page = http.get("/metrics", headers={"authorization": "Bearer m"}).text
    finally:
        server.stop()
    assert metric_samples(page)[("routing_points_refusals_total", (("reason", "budget"),))] == 1


def test_one_server_keeps_local_limits_in_a_database(database_url: str, engine: Engine) -> None:
    add_tenant(engine, "0032")
    first = ServerProcess("serve", "--database", database_url, port=free_port()).wait_ready()
    try:
        second = cli("serve", "--database", database_url, "--port", str(free_port()), timeout=30)
        assert second.returncode != 0
        assert "another server keeps its limits in postgresql://" in second.stderr
    finally:
        first.stop()


def test_workers_need_postgres_and_redis(tmp_path: Path, database_url: str) -> None:
    sqlite = cli(
        "serve",
        "--database",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--workers",
        "2",
        "--port",
        str(free_port()),
        timeout=30,
    )
    assert sqlite.returncode != 0
    assert "--workers above 1 needs PostgreSQL" in sqlite.stderr
    no_redis = cli(
        "serve",
        "--database",
        database_url,
        "--workers",
        "2",
        "--port",
        str(free_port()),
        env={"ROUTING_POINTS_REDIS_URL": ""},
        timeout=30,
    )
    assert no_redis.returncode != 0
    assert "and Redis" in no_redis.stderr


def test_a_change_through_one_server_is_seen_by_all(
    database_url: str,
    engine: Engine,
    shared_redis: RedisNamespace,
    processes: list[ServerProcess],
) -> None:
    tenant = add_tenant(engine, "0032", [point(1, "Before")])
    servers = [serve(processes, database_url, shared_redis, "--workers", "2") for _ in range(2)]
    with httpx.Client() as http:
        tags = {
            http.get(s.url + POINTS, headers=headers(tenant.token)).headers["etag"]
            for s in servers
            for _ in range(4)
        }
        assert len(tags) == 1
        point_store.set_point(engine, "0032", 1, {"rp_name": "After"})
        # Each worker caches tokens with their operation's version, and forgets them when
        # PostgreSQL notifies a change: within a second, every worker serves the change.
        time.sleep(1.0)
        answers = [
            http.get(s.url + POINTS, headers=headers(tenant.token))
            for s in servers
            for _ in range(4)
        ]
    assert {a.json()["data"][0]["rp_name"] for a in answers} == {"After"}
    assert len({a.headers["etag"] for a in answers}) == 1
    assert answers[0].headers["etag"] not in tags
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None


def test_a_revocation_is_refused_by_every_worker_within_a_second(
    database_url: str,
    engine: Engine,
    redis_namespace: RedisNamespace,
    processes: list[ServerProcess],
) -> None:
    tenant = add_tenant(engine, "0032", [point(1)])
    servers = [serve(processes, database_url, redis_namespace, "--workers", "2") for _ in range(2)]
    with httpx.Client() as http:
        warm = [
            http.get(s.url + POINTS, headers=headers(tenant.token)).status_code
            for s in servers
            for _ in range(8)
        ]
        assert warm == [200] * 16  # every worker has the token cached
        revoked = cli("tokens", "revoke", str(tenant.token_id), "--database", database_url)
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(1.0)
        after = [
            http.get(s.url + POINTS, headers=headers(tenant.token))
            for s in servers
            for _ in range(8)
        ]
    assert [a.status_code for a in after] == [403] * 16, "served 1 s after its revocation"
    assert {a.json()["msg"] for a in after} == {"PLEASE VALIDATE TOKEN"}
