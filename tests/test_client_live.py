"""The SDK against the real app: in-process over ASGI, and over a real uvicorn server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from routing_points.client import (
    AsyncClient,
    Client,
    QuotaExceeded,
    RetryPolicy,
    RoutingPoint,
    RoutingPointsError,
)
from routing_points.server import create_app
from routing_points.store import points as point_store
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, SpanRecorder, make_settings, max_overlap
from tests.support.wire import ENDPOINT

NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture
def live_factory(database_url: str) -> Iterator[Any]:
    started: list[LiveServer] = []

    def start(wrap: Any = None, **overrides: Any) -> LiveServer:
        server = LiveServer(make_settings(database_url, **overrides), wrap=wrap).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.anyio
async def test_async_client_in_process_follows_continuations_and_polls_for_free(
    database_url: str, engine: Engine
) -> None:
    ids = [1, 2, 5, 9, 10, 11, 40, 41]
    tenant = add_tenant(engine, "0032", [point(i) for i in ids])
    app = create_app(make_settings(database_url, max_records_per_response=3))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient(
            server="0032", token=tenant.token, base_url="http://testserver", transport=transport
        ) as client:
            pages = [page async for page in client.iter_routing_points()]
            assert [len(page.records) for page in pages] == [3, 3, 2]
            points = await client.routing_points()
            assert [p.rp_id for p in points] == ids
            assert points.etag is not None
            assert not points.not_modified
            before = await client.token_info()
            unchanged = await client.routing_points(if_none_match=points.etag)
            assert unchanged.not_modified
            assert list(unchanged) == []
            after = await client.token_info()
            # Only the token_info call itself was charged in between.
            assert after.token_use_today == before.token_use_today + 1
            point_store.set_point(engine, "0032", 9, {"ivr_active": "no"})
            changed = await client.routing_points(if_none_match=points.etag)
            assert not changed.not_modified
            assert changed.etag != points.etag
            assert [p.ivr_active for p in changed if p.rp_id == 9] == [False]
            # The changed read was three pages: three consumptions.
            assert client.remaining_budget == 1000 - after.token_use_today - 3


def test_sync_client_over_real_http(live: LiveServer, tenant: Tenant) -> None:
    with Client(server="0032", token=tenant.token, base_url=live.url) as client:
        points = client.routing_points()
        info = client.token_info()
    assert points[0] == RoutingPoint(
        101, "Sales line", True, False, True, False, datetime(2026, 11, 20, 14, 3, 11)
    )
    assert [p.rp_id for p in points] == [101, 102, 1000]
    assert points[1].last_use is None
    assert info.token_limit == 1000
    assert info.token_use_today == 2
    assert client.remaining_budget == 998


def test_calls_are_serialised_per_token_across_threads_and_tasks(
    live_factory: Any, tenant: Tenant
) -> None:
    # The server allows one in flight, so any overlap from this process would be refused.
    server = live_factory(wrap=SpanRecorder, max_in_flight_per_token=1, sandbox_latency_ms=15)
    recorder: SpanRecorder = server.asgi
    failures: list[BaseException] = []

    def thread_work() -> None:
        try:
            with Client(
                server="0032", token=tenant.token, base_url=server.url, retry=NO_RETRY
            ) as client:
                for _ in range(3):
                    client.routing_points()
        except BaseException as exc:
            failures.append(exc)

    async def task_work() -> None:
        async with AsyncClient(
            server="0032", token=tenant.token, base_url=server.url, retry=NO_RETRY
        ) as client:
            for _ in range(3):
                await client.token_info()

    async def tasks() -> None:
        await asyncio.gather(*(task_work() for _ in range(10)))

    def loop_thread() -> None:
        try:
            asyncio.run(tasks())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=thread_work) for _ in range(10)]
    threads.append(threading.Thread(target=loop_thread))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    statuses = [status for _, _, status in recorder.spans]
    assert statuses.count(200) == 60
    assert 403 not in statuses
    assert max_overlap(recorder.spans) == 1


def test_a_concurrency_refusal_is_retried_after_retry_after(
    live_factory: Any, tenant: Tenant
) -> None:
    server = live_factory(wrap=SpanRecorder, max_in_flight_per_token=1, sandbox_latency_ms=1200)
    recorder: SpanRecorder = server.asgi
    # Another process holds the token's only slot for 1.2 s.
    outsider = threading.Thread(
        target=httpx.get,
        args=(f"{server.url}{ENDPOINT}?api=token_info",),
        kwargs={"headers": {"wolkvox-token": tenant.token}, "timeout": 10},
    )
    outsider.start()
    deadline = time.monotonic() + 5
    while server.limits.in_flight(tenant.token_id) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.limits.in_flight(tenant.token_id) == 1
    with Client(server="0032", token=tenant.token, base_url=server.url) as client:
        points = client.routing_points()
    outsider.join()
    assert len(points) == 3
    refused = [span for span in recorder.spans if span[2] == 403]
    assert len(refused) >= 1
    # The retry waited at least the Retry-After of 1 s after the refusal.
    retried = [span for span in recorder.spans if span[2] == 200 and span[0] > refused[0][1]]
    assert retried
    assert retried[0][0] - refused[0][1] >= 1.0


def test_quota_is_not_retried_against_the_server(live_factory: Any, engine: Engine) -> None:
    tenant = add_tenant(engine, "0033", [point(1)])
    server = live_factory(wrap=SpanRecorder, daily_calls_per_license=1)
    with Client(server="0033", token=tenant.token, base_url=server.url) as client:
        client.routing_points()
        with pytest.raises(QuotaExceeded) as caught:
            client.routing_points()
        assert client.remaining_budget == 0
    assert caught.value.reset_at is not None
    assert [status for _, _, status in server.asgi.spans] == [200, 403]


def test_errors_carry_request_and_response(live: LiveServer) -> None:
    client = Client(server="0032", token="wrong", base_url=live.url)
    with client, pytest.raises(RoutingPointsError) as caught:
        client.token_info()
    assert caught.value.request is not None
    assert caught.value.request.url.path == ENDPOINT
    assert caught.value.response is not None
    assert caught.value.response.status_code == 403
