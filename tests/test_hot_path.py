"""What the embedded store's hot path may cost: no SQLite write per request.

(A page's first render after a change also keeps the records it rendered: once per
change, not per request. The tests start once those are kept.)"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.support.seed import Tenant, stale_records
from tests.support.servers import LiveServer, headers
from tests.support.services import until_charges_counted
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


async def test_warm_requests_write_nothing_and_their_charges_are_folded_on_the_loop(
    live: LiveServer, tenant: Tenant, engine: Engine
) -> None:
    """A warm request reads no token (the cache) and writes nothing itself: its charge goes
    to the ledger. Folds count the charges on the loop's own connection, so the token cache
    (kept until another connection writes) survives them, one statement for the counters
    and one for the ledger's mark each, never one commit per request."""
    reader = live.app.state.services.reader
    database_url = live.settings.database_url
    on_loop: list[str] = []
    on_thread: list[str] = []
    async with httpx.AsyncClient(base_url=live.url) as http:
        await rendered_and_kept(http, tenant.token, engine)
        assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
        until_charges_counted(database_url)
        before = used(engine, tenant)
        reader.loop_connection.set_trace_callback(on_loop.append)
        reader._writer().set_trace_callback(on_thread.append)
        try:
            for url in (POINTS, POINTS, TOKEN_INFO, f"{POINTS}&routing=101", POINTS):
                assert (await http.get(url, headers=headers(tenant.token))).status_code == 200
            until_charges_counted(database_url)
        finally:
            reader.loop_connection.set_trace_callback(None)
            reader._writer().set_trace_callback(None)
    assert not [s for s in on_loop if "JOIN operations" in s], on_loop  # no token lookup
    writes = [s for s in on_loop if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    folds = [s for s in writes if "usage_counters" in s]
    assert 1 <= len(folds) <= 5, writes
    assert all("WHERE EXISTS" in s for s in folds), folds  # a fold's statement, no charge's own
    assert len(writes) == 2 * len(folds), writes
    assert on_thread == []
    assert used(engine, tenant) == before + 5


def used(engine: Engine, tenant: Tenant) -> int:
    with engine.connect() as conn:
        total = conn.execute(
            text("SELECT COALESCE(SUM(count), 0) FROM usage_counters WHERE token_id = :t"),
            {"t": tenant.token_id},
        ).scalar_one()
    return int(total)
