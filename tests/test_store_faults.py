"""The embedded store under faults: another process holding the write lock, a read-only file.

The server must keep answering (and charging, durably) while SQLite's write lock is held
elsewhere (a CLI import) or its file cannot be written, and health must tell the truth
about a store that cannot be written, then recover alone, every charge counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from routing_points.store.reader import StoreUnavailable
from routing_points.store.sqlite import SqliteReader
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, headers, make_settings
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.anyio

POINTS = f"{ENDPOINT}?api=routing_points"

HOLD_THE_WRITE_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
connection.execute("UPDATE operations SET name = name")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def hold_the_write_lock(path: Path) -> subprocess.Popen[str]:
    """Another process that takes SQLite's write lock and keeps it until told (a line)."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITE_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def live_sqlite(database_url: str, tenant: Tenant) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(database_url)).start()
    yield server
    server.stop()


async def test_a_held_write_lock_leaves_the_server_answering_and_charging(
    database_url: str, tenant: Tenant, engine: Engine, live_sqlite: LiveServer
) -> None:
    other = add_tenant(engine, "0033", [point(1)], timezone="America/Bogota")
    async with httpx.AsyncClient(base_url=live_sqlite.url, timeout=30) as http:
        # The day's counters are loaded before the lock, as a running server has them.
        assert (await http.get(POINTS, headers=headers(tenant.token))).status_code == 200
        await until_counted(database_url, tenant, 1)
        with hold_the_write_lock(sqlite_path(database_url)) as holder:
            try:
                assert holder.stdout is not None
                assert holder.stdin is not None
                assert holder.stdout.readline().strip() == "locked"
                # Consumptions are answered under another process's lock: their charges are
                # durable in the ledger (store/ledger.py), and wait there for the lock...
                during = [
                    (await http.get(POINTS, headers=headers(tenant.token))).status_code
                    for _ in range(3)
                ]
                assert during == [200] * 3
                # An operation's first call loads its counters: read on the loop, at once
                # (it waited ~10 s behind a fold stuck on the lock).
                first = await http.get(POINTS, headers=headers(other.token), timeout=3)
                assert first.status_code == 200
                health = await http.get("/healthz", timeout=5)
                assert health.status_code == 200
                await asyncio.sleep(0.3)
                assert counted(database_url, tenant) == 1
                holder.stdin.write("\n")
                holder.stdin.flush()
                assert holder.wait(timeout=10) == 0
            finally:
                holder.kill()
        # ...and reach the counters once it is gone.
        await until_counted(database_url, tenant, 4)


def counted(database_url: str, tenant: Tenant) -> int:
    with contextlib.closing(sqlite3.connect(sqlite_path(database_url))) as conn:
        (total,) = conn.execute(
            "SELECT COALESCE(SUM(count), 0) FROM usage_counters WHERE token_id = ?",
            (tenant.token_id,),
        ).fetchone()
    return int(total)


async def until_counted(database_url: str, tenant: Tenant, expected: int) -> None:
    """The charges reach the counters other processes read within a fold (50 ms) when the
    store can be written; a few seconds here, for a loaded machine."""
    deadline = time.monotonic() + 10
    found = counted(database_url, tenant)
    while found != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        found = counted(database_url, tenant)
    assert found == expected


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


async def test_readyz_fails_on_a_read_only_store_and_the_server_recovers(
    database_url: str,
    tenant: Tenant,
    live_sqlite: LiveServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An immutable file (chattr +i): unwritable even for root, which tests here run as."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    path = sqlite_path(database_url)
    files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    try:
        chattr("+i", *files)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"chattr +i is not allowed here: {exc.stderr}")
    caplog.set_level(logging.INFO, logger="routing_points.outage")
    try:
        async with httpx.AsyncClient(base_url=live_sqlite.url, timeout=30) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["data"]["limits"] == "ok"
            assert ready.json()["data"]["store"] != "ok"
            # Answered all the same: their charges wait in the ledger, which stays writable.
            during = [
                (await http.get(POINTS, headers=headers(tenant.token))).status_code
                for _ in range(5)
            ]
            assert during == [200] * 5
            assert (await http.get("/readyz")).status_code == 503
            await asyncio.sleep(0.3)
            assert counted(database_url, tenant) == 0
            chattr("-i", *files)
            # Ready again before any call has tried: readiness probes the store itself.
            assert (await http.get("/readyz")).status_code == 200
            after = [
                (await http.get(POINTS, headers=headers(tenant.token))).status_code
                for _ in range(3)
            ]
            assert after == [200] * 3
            await until_counted(database_url, tenant, 8)
    finally:
        chattr("-i", *files)
    # Folds failed for a while, one outage: logged once when it started, once when it ended.
    lines = [r.getMessage() for r in caplog.records if r.name == "routing_points.outage"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("store (SQLite) unavailable: ")
    assert lines[1].startswith("store (SQLite) available again after ")


async def test_a_full_disk_is_reported_with_its_real_cause(
    database_url: str, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's own limit on the file's size stands in for a full disk: same error path."""
    reader = SqliteReader(sqlite_path(database_url))
    caplog.set_level(logging.INFO, logger="routing_points.outage")
    try:
        # A full disk refuses every connection: the loop's, which commits first, and the
        # writer thread's, which a failed commit falls back to.
        for connection in (reader.loop_connection, reader._writer()):
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreUnavailable) as failure:
            await asyncio.gather(
                *(reader.charge(tenant.token_id, f"2026-{i:05d}", 1, 1) for i in range(20_000))
            )
    finally:
        await reader.close()
    assert "database or disk is full" in str(failure.value)
    lines = [r.getMessage() for r in caplog.records if r.name == "routing_points.outage"]
    assert lines == [f"store (SQLite) unavailable: {failure.value}"]
