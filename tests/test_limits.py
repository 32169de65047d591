"""Every consumption limit (API.md section 6), over a real uvicorn server and real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine

from routing_points.clock import ManualClock
from routing_points.store import access, tenants
from routing_points.store import points as point_store
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import (
    LiveServer,
    SpanRecorder,
    gather_gets,
    headers,
    make_settings,
    max_overlap,
)
from tests.support.wire import ENDPOINT

pytestmark = [pytest.mark.anyio, pytest.mark.dated]

POINTS = f"{ENDPOINT}?api=routing_points"
TOKEN_INFO = f"{ENDPOINT}?api=token_info"


def structured_list(value: str) -> dict[str, dict[str, int]]:
    """Parse an RFC 8941 list of string items with integer parameters."""
    items: dict[str, dict[str, int]] = {}
    for member in value.split(","):
        name, *params = member.strip().split(";")
        assert name.startswith('"'), value
        assert name.endswith('"'), value
        parsed = {}
        for param in params:
            key, number = param.split("=")
            parsed[key] = int(number)
        items[name.strip('"')] = parsed
    return items


def quota_of(answer: httpx.Response) -> int:
    return structured_list(answer.headers["ratelimit-policy"])["daily"]["q"]


STACKS = ["sqlite", "postgresql", "postgresql+redis"]


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    """Every limit, on each store and limits backend."""
    return str(request.param)


@pytest.fixture
def database_url(stack: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if stack.startswith("postgresql"):
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def server_factory(database_url: str, stack: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[LiveServer] = []
    backend: dict[str, Any] = {}
    if stack.endswith("+redis"):
        backend = request.getfixturevalue("redis_namespace").settings()

    def start(clock: Any = None, wrap: Any = None, **overrides: Any) -> LiveServer:
        overrides = {**backend, **overrides}
        kwargs: dict[str, Any] = {"wrap": wrap}
        if clock is not None:
            kwargs["clock"] = clock
        server = LiveServer(make_settings(database_url, **overrides), **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def test_concurrency_never_more_than_two(server_factory: Any, tenant: Tenant) -> None:
    server = server_factory(wrap=SpanRecorder, sandbox_latency_ms=500)
    recorder: SpanRecorder = server.asgi
    responses = await gather_gets(f"{server.url}{POINTS}", 20, headers(tenant.token))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200] + [403] * 18
    for refused in (r for r in responses if r.status_code == 403):
        assert refused.json()["msg"] == "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)"
        assert refused.headers["retry-after"] == "1"
    # A call ends once its slot is released, which (with Redis) may be a moment after its
    # client has read the whole answer: wait for all twenty to end.
    for _ in range(500):
        if len(recorder.spans) == 20:
            break
        await asyncio.sleep(0.01)
    served = [span for span in recorder.spans if span[2] == 200]
    assert max_overlap(served) == 2
    # Refused at once: every refusal was answered while the two were still being served.
    first_served_end = min(end for _, end, _ in served)
    assert all(end < first_served_end for _, end, status in recorder.spans if status == 403)
    async with httpx.AsyncClient() as http:
        later = await http.get(f"{server.url}{POINTS}", headers=headers(tenant.token))
    assert later.status_code == 200


async def test_the_concurrency_message_follows_the_setting(
    server_factory: Any, tenant: Tenant
) -> None:
    server = server_factory(sandbox_latency_ms=400, max_in_flight_per_token=3)
    responses = await gather_gets(f"{server.url}{POINTS}", 6, headers(tenant.token))
    assert sorted(r.status_code for r in responses) == [200] * 3 + [403] * 3
    refused = next(r for r in responses if r.status_code == 403)
    assert refused.json()["msg"] == "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (3)"


async def test_budget_is_exact_under_concurrency(
    server_factory: Any, engine: Engine, tenant: Tenant
) -> None:
    tokens = [tenants.add_token(engine, tenant.server, f"t{i}").secret for i in range(40)]
    server = server_factory(daily_calls_per_license=25)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=server.url, limits=limits) as http:
        responses = await asyncio.gather(
            *(http.get(POINTS, headers=headers(token)) for token in tokens)
        )
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 403]
    assert len(ok) == 25
    assert len(refused) == 15
    assert {r.json()["msg"] for r in refused} == {"TOKEN LIMIT EXCEEDED"}
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert structured_list(response.headers["ratelimit"])["daily"]["r"] == 0


async def test_counters_survive_a_restart(
    server_factory: Any, engine: Engine, tenant: Tenant
) -> None:
    server = server_factory(daily_calls_per_license=50)
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(25):
            response = await http.get(POINTS, headers=headers(tenant.token))
            assert response.status_code == 200
        etag = response.headers["etag"]
    server.stop()
    restarted = server_factory(daily_calls_per_license=50)
    async with httpx.AsyncClient(base_url=restarted.url) as http:
        # A 304 costs nothing and still shows the budget: 25 of 50 are left.
        free = await http.get(POINTS, headers=headers(tenant.token, **{"if-none-match": etag}))
        assert free.status_code == 304
        assert structured_list(free.headers["ratelimit"])["daily"]["r"] == 25
        info = await http.get(TOKEN_INFO, headers=headers(tenant.token))
    record = info.json()["data"][0]
    # 25 before the restart, and this token_info itself.
    assert record["token_use_today"] == "26"
    assert record["all_token_today"] == "26"
    assert record["available_consumption_options"] == "24"


def bogota_clock(day: int, hour: int, minute: int, second: int) -> ManualClock:
    local = datetime(2026, 11, day, hour, minute, second, tzinfo=ZoneInfo("America/Bogota"))
    return ManualClock(local.timestamp())


async def test_the_budget_rolls_over_at_local_midnight(server_factory: Any, engine: Engine) -> None:
    bogota = add_tenant(engine, "0057", [point(1)], timezone="America/Bogota")
    clock = bogota_clock(27, 23, 59, 50)
    server = server_factory(clock=clock, daily_calls_per_license=3)
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(3):
            assert (await http.get(POINTS, headers=headers(bogota.token))).status_code == 200
        spent = await http.get(POINTS, headers=headers(bogota.token))
        assert spent.status_code == 403
        assert spent.json()["msg"] == "TOKEN LIMIT EXCEEDED"
        assert spent.headers["retry-after"] == "10"  # until 00:00:00 in Bogota
        # 00:00:00 UTC is still the 27th in Bogota (UTC-5): no reset at UTC midnight.
        clock.now = datetime(2026, 11, 28, 0, 0, 5, tzinfo=ZoneInfo("UTC")).timestamp()
        assert (await http.get(POINTS, headers=headers(bogota.token))).status_code == 403
        clock.now = bogota_clock(28, 0, 0, 1).now
        # The same call as just before midnight: counted on the new day all the same.
        again = await http.get(POINTS, headers=headers(bogota.token))
        assert again.status_code == 200
        fresh = await http.get(TOKEN_INFO, headers=headers(bogota.token))
    assert fresh.status_code == 200
    assert fresh.json()["data"][0]["token_use_today"] == "2"
    assert structured_list(fresh.headers["ratelimit"])["daily"]["t"] == 86_399


async def test_licenses_changed_while_serving_apply_to_the_next_call(
    server_factory: Any, engine: Engine, stack: str
) -> None:
    """Lowered, then raised: on SQLite the very next call; on PostgreSQL the next once the
    change's notification has reached the server (the token cache's bound, 1 s)."""
    tenant = add_tenant(engine, "0058", [point(1)], licenses=3)
    server = server_factory(daily_calls_per_license=3)
    patience_s = 0 if stack == "sqlite" else 1.0
    used = 0
    async with httpx.AsyncClient(base_url=server.url) as http:

        async def call() -> httpx.Response:
            nonlocal used
            answer = await http.get(POINTS, headers=headers(tenant.token))
            used += answer.status_code == 200
            return answer

        async def first_call_told(quota: int) -> httpx.Response:
            deadline = time.monotonic() + patience_s
            answer = await call()
            while quota_of(answer) != quota and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                answer = await call()
            return answer

        for _ in range(7):
            assert (await call()).status_code == 200
        access.set_operation(engine, "0058", licenses=2)  # as `operations set` does
        lowered = await first_call_told(6)
        assert (lowered.status_code, quota_of(lowered)) == (403, 6)  # 7 used of 6
        access.set_operation(engine, "0058", licenses=4)
        raised = await first_call_told(12)
    assert (raised.status_code, quota_of(raised)) == (200, 12)
    assert structured_list(raised.headers["ratelimit"])["daily"]["r"] == 12 - used


async def test_a_tokens_own_daily_limit(server_factory: Any, engine: Engine) -> None:
    capped = add_tenant(engine, "0061", [point(1)], licenses=2, daily_limit=2)
    other = add_tenant(engine, "0061")
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        first = await http.get(POINTS, headers=headers(capped.token))
        assert structured_list(first.headers["ratelimit-policy"]) == {
            "daily": {"q": 2000, "w": 86400},
            "token": {"q": 2, "w": 86400},
        }
        assert structured_list(first.headers["ratelimit"])["token"]["r"] == 1
        info = await http.get(TOKEN_INFO, headers=headers(capped.token))
        assert info.json()["data"][0]["token_limit"] == "2"
        assert info.json()["data"][0]["available_consumption_options"] == "0"
        refused = await http.get(POINTS, headers=headers(capped.token))
        assert refused.json()["msg"] == "TOKEN LIMIT EXCEEDED"
        # The operation's budget is shared, not spent: another token goes on.
        assert (await http.get(POINTS, headers=headers(other.token))).status_code == 200


async def test_headers_on_every_authenticated_answer(server_factory: Any, tenant: Tenant) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        answers = [
            await http.get(POINTS, headers=headers(tenant.token)),
            await http.get(TOKEN_INFO, headers=headers(tenant.token)),
            await http.get(f"{ENDPOINT}?api=nope", headers=headers(tenant.token)),
        ]
        anonymous = await http.get(POINTS)
    remaining = []
    for answer in answers:
        assert answer.headers["x-poll-interval"] == "300"
        assert structured_list(answer.headers["ratelimit-policy"]) == {
            "daily": {"q": 1000, "w": 86400}
        }
        state = structured_list(answer.headers["ratelimit"])["daily"]
        assert 0 < state["t"] <= 86_400
        remaining.append(state["r"])
    # A bad parameter with a valid token was admitted, so it was charged too.
    assert remaining == [999, 998, 997]
    assert "ratelimit" not in anonymous.headers
    assert "x-poll-interval" not in anonymous.headers


async def test_continuation_past_the_record_cap(
    server_factory: Any, engine: Engine, tenant: Tenant
) -> None:
    big = add_tenant(engine, "0060")
    point_store.upsert_points(
        engine, big.server, [{"rp_id": i, "rp_name": f"P{i}"} for i in range(1, 60_002)]
    )
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        first = await http.get(POINTS, headers=headers(big.token))
        body = first.json()
        assert len(body["data"]) == 60_000
        assert body["msg"].startswith("60000 records were found")
        assert "truncated" in body["msg"]
        assert first.headers["x-truncated"] == "true"
        following = first.links["next"]["url"]
        assert following == f"{ENDPOINT}?api=routing_points&after=60000"
        rest = await http.get(following, headers=headers(big.token))
    assert rest.json()["msg"] == "1 records were found"
    assert [r["rp_id"] for r in rest.json()["data"]] == ["60001"]
    assert "link" not in rest.headers
    assert "x-truncated" not in rest.headers


async def test_following_links_returns_every_record_once(
    server_factory: Any, engine: Engine
) -> None:
    ids = [3, 7, 8, 20, 21, 22, 100, 101, 5000, 5001, 70000]
    paged = add_tenant(engine, "0062", [point(i) for i in ids])
    server = server_factory(max_records_per_response=3)
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=server.url) as http:
        url: str | None = POINTS
        while url is not None:
            response = await http.get(url, headers=headers(paged.token))
            seen += [r["rp_id"] for r in response.json()["data"]]
            url = response.links.get("next", {}).get("url")
    assert seen == [str(i) for i in ids]


async def test_the_size_cap_refuses_without_a_partial_body(
    server_factory: Any, engine: Engine
) -> None:
    wide = add_tenant(engine, "0063", [point(i, "x" * 200) for i in range(1, 30)])
    server = server_factory(max_response_bytes=4000)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(POINTS, headers=headers(wide.token))
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "BAD REQUEST",
        "msg": "THE RESULT EXCEEDS THE SIZE LIMIT OF 4000 BYTES",
        "data": None,
    }
    assert b"xxxx" not in response.content


async def test_the_time_limit_answers_and_frees_the_slot(
    server_factory: Any, tenant: Tenant
) -> None:
    server = server_factory(sandbox_latency_ms=10_000, consumption_timeout_s=0.3)
    # The client gives up long before the 10 s of work: only a cut-short consumption answers.
    responses = await gather_gets(
        f"{server.url}{POINTS}", 2, headers(tenant.token), client_timeout=4
    )
    for response in responses:
        assert response.status_code == 504
        assert response.json()["msg"] == "THE CONSUMPTION EXCEEDED THE TIME LIMIT OF 0.3 SECONDS"
        assert response.json()["data"] is None
    assert server.in_flight(tenant.token_id) == 0
    # Both slots are free again: the next two are timed out too, not refused.
    again = await gather_gets(f"{server.url}{POINTS}", 2, headers(tenant.token), client_timeout=4)
    assert [r.status_code for r in again] == [504, 504]


async def test_a_client_disconnect_frees_the_slot(server_factory: Any, tenant: Tenant) -> None:
    server = server_factory(sandbox_latency_ms=3000)
    async with httpx.AsyncClient(base_url=server.url, timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(POINTS, headers=headers(tenant.token))
    for _ in range(100):  # well under the 3 s the consumption would have taken
        if server.in_flight(tenant.token_id) == 0:
            break
        await asyncio.sleep(0.02)
    assert server.in_flight(tenant.token_id) == 0


async def test_simultaneous_calls_cannot_both_beat_the_minimum_interval(
    server_factory: Any, tenant: Tenant
) -> None:
    """Two calls at once (the concurrency limit lets 2 through) must not both consume: the
    second sees the first's time even while the first's charge is still being written."""
    server = server_factory(min_poll_interval_s=300)
    for _ in range(5):
        responses = await gather_gets(f"{server.url}{POINTS}", 2, headers(tenant.token))
        statuses = sorted(r.status_code for r in responses)
        assert statuses in ([200, 403], [403, 403]), statuses
    async with httpx.AsyncClient(base_url=server.url) as http:
        info = await http.get(TOKEN_INFO, headers=headers(tenant.token))
    # One consumption in all, then token_info itself.
    assert info.json()["data"][0]["token_use_today"] == "2"


async def test_the_minimum_interval_switch(server_factory: Any, tenant: Tenant) -> None:
    clock = ManualClock(time.time())
    off = server_factory(clock=clock)
    async with httpx.AsyncClient(base_url=off.url) as http:
        for _ in range(2):
            assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
    off.stop()
    on = server_factory(clock=clock, min_poll_interval_s=300)
    async with httpx.AsyncClient(base_url=on.url) as http:
        assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
        clock.advance(100)
        early = await http.get(POINTS, headers=headers(tenant.token))
        assert early.status_code == 403
        assert early.json()["msg"] == (
            "THE MINIMUM INTERVAL BETWEEN CONSUMPTIONS (300 SECONDS) HAS NOT ELAPSED"
        )
        assert early.headers["retry-after"] == "200"
        # Per token and api: token_info is another api.
        info = await http.get(TOKEN_INFO, headers=headers(tenant.token))
        assert info.status_code == 200
        # The refusal cost nothing: 2 + 1 before the switch, 1 + token_info after.
        assert info.json()["data"][0]["token_use_today"] == "4"
        clock.advance(200)
        assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200


async def test_conditional_requests_cost_nothing(
    server_factory: Any, engine: Engine, tenant: Tenant
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        first = await http.get(POINTS, headers=headers(tenant.token))
        etag = first.headers["etag"]
        again = await http.get(POINTS, headers=headers(tenant.token))
        assert again.headers["etag"] == etag
        for match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            free = await http.get(POINTS, headers=headers(tenant.token, **{"if-none-match": match}))
            assert free.status_code == 304
            assert free.content == b""
            assert free.headers["etag"] == etag
            assert structured_list(free.headers["ratelimit"])["daily"]["r"] == 998
        info = await http.get(TOKEN_INFO, headers=headers(tenant.token))
        assert info.json()["data"][0]["token_use_today"] == "3"
        point_store.set_point(engine, tenant.server, 101, {"crm_active": "yes"})
        # Seen at once on SQLite; on PostgreSQL once the change's NOTIFY reaches the worker,
        # which the token cache's bound (1 s) caps. Until then a 304 still costs nothing.
        conditional = headers(tenant.token, **{"if-none-match": etag})
        deadline = time.monotonic() + 1.0
        changed = await http.get(POINTS, headers=conditional)
        while changed.status_code == 304 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            changed = await http.get(POINTS, headers=conditional)
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert changed.json()["data"][0]["crm_active"] == "yes"
        # A different filter is a different answer, with its own tag.
        filtered = await http.get(f"{POINTS}&routing=101", headers=headers(tenant.token))
        assert filtered.headers["etag"] != changed.headers["etag"]


async def test_a_304_still_takes_a_concurrency_slot(server_factory: Any, tenant: Tenant) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.url) as http:
        etag = (await http.get(POINTS, headers=headers(tenant.token))).headers["etag"]
    server.stop()
    slow = server_factory(sandbox_latency_ms=500)
    conditional = headers(tenant.token, **{"if-none-match": etag})
    responses = await gather_gets(f"{slow.url}{POINTS}", 4, conditional)
    assert sorted(r.status_code for r in responses) == [304, 304, 403, 403]


async def test_a_serialising_client_is_never_refused(server_factory: Any, tenant: Tenant) -> None:
    server = server_factory(max_in_flight_per_token=1, sandbox_latency_ms=5)
    async with httpx.AsyncClient(base_url=server.url) as http:
        statuses = [
            (await http.get(POINTS, headers=headers(tenant.token))).status_code for _ in range(60)
        ]
    assert statuses == [200] * 60


async def test_sandbox_failure_rate(server_factory: Any, tenant: Tenant) -> None:
    server = server_factory(sandbox_failure_rate=1.0)
    async with httpx.AsyncClient(base_url=server.url) as http:
        failed = await http.get(POINTS, headers=headers(tenant.token))
        assert failed.status_code == 503
        assert failed.json()["error"] == "SERVICE UNAVAILABLE"
        assert failed.headers["x-sandbox-fault"] == "failure"
        # Admitted, so charged, as the vendor charges whatever the result.
        assert structured_list(failed.headers["ratelimit"])["daily"]["r"] == 999
    assert server.in_flight(tenant.token_id) == 0


async def test_limits_switched_off_still_answer_304(server_factory: Any, tenant: Tenant) -> None:
    server = server_factory(limits_enabled=False)
    async with httpx.AsyncClient(base_url=server.url) as http:
        etag = (await http.get(POINTS, headers=headers(tenant.token))).headers["etag"]
        free = await http.get(POINTS, headers=headers(tenant.token, **{"if-none-match": etag}))
        assert free.status_code == 304
        assert "ratelimit" not in free.headers
        assert free.headers["x-poll-interval"] == "300"
