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
