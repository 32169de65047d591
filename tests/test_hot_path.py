"""What the embedded store's hot path may cost: one SQLite write per request."""

from __future__ import annotations

import httpx
import pytest

from tests.support.seed import Tenant
from tests.support.servers import LiveServer, headers
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.anyio

POINTS = f"{ENDPOINT}?api=routing_points"
TOKEN_INFO = f"{ENDPOINT}?api=token_info"


async def test_one_sqlite_write_per_request(live: LiveServer, tenant: Tenant) -> None:
    server = live
    statements: list[str] = []
    reader = server.app.state.services.reader
    # Reads on the loop's connection, counter commits on the writer thread's.
    connections = [reader.loop_connection, reader._writer()]
    for connection in connections:
        connection.set_trace_callback(statements.append)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
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
    live: LiveServer, tenant: Tenant
) -> None:
    """The counter commit goes through the loop's own connection when the write lock is
    free, so the token cache (kept until another connection writes) survives it."""
    reader = live.app.state.services.reader
    on_loop: list[str] = []
    on_thread: list[str] = []
    async with httpx.AsyncClient(base_url=live.url) as http:
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
