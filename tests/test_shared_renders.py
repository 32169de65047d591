"""A page is rendered once however many clients ask for it at the same time."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import Engine

from routing_points.server.pages import Page, SharedRenders
from routing_points.store import points as point_store
from routing_points.store import tenants
from tests.support.seed import add_tenant, point
from tests.support.servers import LiveServer, make_settings
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.anyio


async def test_waiters_share_one_render_and_outlive_a_cancelled_one() -> None:
    renders = SharedRenders()
    release = asyncio.Event()
    started = 0

    async def render() -> Page:
        nonlocal started
        started += 1
        await release.wait()
        return Page(b"{}", 0, None, 7)

    key = (1, 7, None, 0)
    waiters = [asyncio.ensure_future(renders.get(key, render)) for _ in range(6)]
    for _ in range(5):  # every waiter has started and is waiting
        await asyncio.sleep(0)
    assert started == 1
    assert len(renders) == 1
    waiters[0].cancel()  # one client gives up: the render goes on for the others
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    pages = await asyncio.gather(*waiters[1:])
    assert {id(page) for page in pages} == {id(pages[0])}
    assert waiters[0].cancelled()
    assert started == 1
    assert len(renders) == 0  # a later version renders anew


async def test_a_failed_render_reaches_every_waiter_and_is_not_kept() -> None:
    renders = SharedRenders()

    async def render() -> Page:
        await asyncio.sleep(0)
        raise RuntimeError("store gone")

    key = (1, 7, None, 0)
    results = await asyncio.gather(
        *(renders.get(key, render) for _ in range(3)), return_exceptions=True
    )
    assert [str(result) for result in results] == ["store gone"] * 3
    assert len(renders) == 0


async def test_six_clients_after_a_change_share_one_render(
    database_url: str, engine: Engine
) -> None:
    tenant = add_tenant(engine, "0032", [point(i) for i in range(1, 5_001)])
    tokens = [tenant.token] + [tenants.add_token(engine, "0032", f"t{i}").secret for i in range(5)]
    # The sandbox's latency holds every request until all six have missed the page cache,
    # so each would start a render of its own if renders were not shared.
    server = LiveServer(make_settings(database_url, sandbox_latency_ms=300)).start()
    statements: list[str] = []
    try:
        url = f"{server.url}{ENDPOINT}?api=routing_points"
        async with httpx.AsyncClient(timeout=60) as http:
            assert (await http.get(url, headers={"wolkvox-token": tokens[0]})).status_code == 200
            point_store.set_point(engine, "0032", 1, {"rp_name": "Changed"})
            connection = server.app.state.services.reader._page_connection
            connection.set_trace_callback(statements.append)
            answers = await asyncio.gather(
                *(http.get(url, headers={"wolkvox-token": token}) for token in tokens)
            )
    finally:
        server.stop()
    assert [answer.status_code for answer in answers] == [200] * 6
    assert len({answer.content for answer in answers}) == 1
    assert b'"Changed"' in answers[0].content
    # One render: at most one look at what changed, then (all 5,000 records were kept
    # since the page held) one read of the whole page.
    whole_reads = [s for s in statements if "group_concat" in s]
    change_reads = [s for s in statements if "kept_version >=" in s]
    assert (len(whole_reads), len(change_reads)) in ((1, 0), (1, 1)), "\n".join(statements)
