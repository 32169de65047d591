"""What the embedded store's hot path may cost: one SQLite write per request.

(A page's first render after a change also keeps the records it rendered: once per
change, not per request. The tests start once those are kept.)"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import Engine

from tests.support.seed import Tenant, stale_records
from tests.support.servers import LiveServer, headers
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.anyio

POINTS = f"{ENDPOINT}?api=routing_points"
TOKEN_INFO = f"{ENDPOINT}?api=token_info"


async def rendered_and_kept(http: httpx.AsyncClient, token: str, engine: Engine) -> None:
    """Render the pages once and wait until their records are kept."""
    for url in (POINTS, f"{POINTS}&routing=101"):
        assert (await http.get(url, headers=headers(token))).status_code == 200
    for _ in range(200):
        if stale_records(engine) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the rendered records were not kept within 10 s")


async def test_one_sqlite_write_per_request(
    live: LiveServer, tenant: Tenant, engine: Engine
) -> None:
    server = live
    statements: list[str] = []
    reader = server.app.state.services.reader
    # Reads on the loop's connection, counter commits on the writer thread's.
    connections = [reader.loop_connection, reader._writer()]
    for connection in connections:
        connection.set_trace_callback(statements.append)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await rendered_and_kept(http, tenant.token, engine)
            for url in (POINTS, POINTS, TOKEN_INFO, f"{POINTS}&routing=101"):
                statements.clear()
                assert (await http.get(url, headers=headers(tenant.token))).status_code == 200
                writes = [
                    s
                    for s in statements
                    if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
                ]
                assert len(writes) == 1, statements
    finally:
        for connection in connections:
            connection.set_trace_callback(None)


async def test_a_warm_request_reads_no_token_and_commits_on_the_loop(
    live: LiveServer, tenant: Tenant, engine: Engine
) -> None:
    """The counter commit goes through the loop's own connection when the write lock is
    free, so the token cache (kept until another connection writes) survives it."""
    reader = live.app.state.services.reader
    on_loop: list[str] = []
    on_thread: list[str] = []
    async with httpx.AsyncClient(base_url=live.url) as http:
        await rendered_and_kept(http, tenant.token, engine)
        assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
        reader.loop_connection.set_trace_callback(on_loop.append)
        reader._writer().set_trace_callback(on_thread.append)
        try:
            for _ in range(5):
                assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
        finally:
            reader.loop_connection.set_trace_callback(None)
            reader._writer().set_trace_callback(None)
    assert not [s for s in on_loop if "FROM tokens" in s], on_loop
    assert len([s for s in on_loop if s.lstrip().upper().startswith("INSERT")]) == 5
    assert on_thread == []
