"""The embedded store's charge ledger: a charge is durable when recorded, counted once.

A server killed with SIGKILL right after answering must find every answered charge at its
next start; a record its death cut short is never counted; a ledger that belongs to
another database is set aside; a full ledger sends charges back to waiting for SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from routing_points.limits.backend import AdmitRequest, Outcome
from routing_points.limits.local import LocalLimits
from routing_points.store import ledger as ledger_module
from routing_points.store.engine import configure_sqlite_connection
from routing_points.store.ledger import ChargeLedger, ledger_path, open_ledger
from routing_points.store.reader import StoreUnavailable
from routing_points.store.sqlite import SqliteReader
from tests.support.limits import admit_request
from tests.support.processes import ServerProcess, cli
from tests.support.seed import Tenant
from tests.support.servers import headers
from tests.support.services import free_port
from tests.support.wire import ENDPOINT

POINTS = f"{ENDPOINT}?api=routing_points"
DAY = "2026-11-20"


def path_of(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def counted(engine: Engine, token_id: int, day: str | None = None) -> int:
    where = "token_id = :token" + ("" if day is None else " AND day = :day")
    with engine.connect() as conn:
        total = conn.execute(
            text(f"SELECT COALESCE(SUM(count), 0) FROM usage_counters WHERE {where}"),
            {"token": token_id, "day": day},
        ).scalar_one()
    return int(total)


def operation_of(engine: Engine, token_id: int) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT operation_id FROM tokens WHERE id = :token"), {"token": token_id}
        ).scalar_one()
    return int(found)


def connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    configure_sqlite_connection(conn)
    return conn


def test_a_server_killed_right_after_answering_counts_every_answer_at_its_next_start(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    answered = 0
    server = ServerProcess("serve", "--database", database_url, port=free_port()).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(40):
                assert http.get(POINTS, headers=headers(tenant.token)).status_code == 200
                answered += 1
        server.process.send_signal(signal.SIGKILL)  # no fold, no clean-up
        server.process.wait()
    finally:
        server.kill()
    restarted = ServerProcess("serve", "--database", database_url, port=free_port()).wait_ready()
    try:
        # Counted before the restarted server serves anything: at its start.
        assert counted(engine, tenant.token_id) == answered == 40
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            info = http.get(f"{ENDPOINT}?api=token_info", headers=headers(tenant.token))
        assert info.json()["data"][0]["token_use_today"] == "41"
    finally:
        restarted.stop()
    # Stopped cleanly: the last charge is folded on the way out.
    assert counted(engine, tenant.token_id) == 41


def recorded(
    path: Path, conn: sqlite3.Connection, tenant: Tenant, operation_id: int, charges: int
) -> ChargeLedger:
    """A new ledger of 8 records with this many charges of one call each on DAY."""
    ledger = open_ledger(path, conn, capacity=8)
    for _ in range(charges):
        assert ledger.append(tenant.token_id, DAY, operation_id, 1)
    return ledger


def reopened_and_folded(path: Path, conn: sqlite3.Connection) -> None:
    """A restart: the ledger opened (a dead server's records taken back), then folded."""
    ledger = open_ledger(path, conn)
    ledger.fold_alone(conn, *ledger.take())
    ledger.close()


def test_a_record_cut_short_is_never_counted_and_a_whole_one_is_counted_once(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    path = path_of(database_url)
    operation_id = operation_of(engine, tenant.token_id)
    with connection(path) as conn:
        ledger = recorded(path, conn, tenant, operation_id, 3)
        # The fourth record's fields are written, its number is not: the process died there.
        words = ledger._words[4 * 4 : 5 * 4]
        words[1], words[2], words[3] = tenant.token_id, operation_id, 20261120 | 1 << 32
        words.release()
        ledger.close()
        # A restart after a restart: the three whole records count once.
        for _ in range(2):
            reopened_and_folded(path, conn)
    assert counted(engine, tenant.token_id, DAY) == 3


@pytest.mark.parametrize(
    ("damaged", "number", "left", "said"),
    [
        # A record between whole ones: only it is lost, and it is counted.
        (2, 12345, 4, "1 damaged charge records are not counted"),
        # The last one: how many charges it held cannot be known; that it is damaged can.
        (5, -1, 4, "1 records are damaged; charges they held, if any, are not counted"),
    ],
)
def test_a_damaged_record_is_lost_alone_and_named(
    database_url: str,
    engine: Engine,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
    damaged: int,
    number: int,
    left: int,
    said: str,
) -> None:
    path = path_of(database_url)
    operation_id = operation_of(engine, tenant.token_id)
    caplog.set_level(logging.WARNING, logger="routing_points.store")
    with connection(path) as conn:
        ledger = recorded(path, conn, tenant, operation_id, 5)
        ledger._words[damaged * 4] = number  # that record's number scribbled over
        ledger.close()
        reopened_and_folded(path, conn)
    assert counted(engine, tenant.token_id, DAY) == left
    assert [r.getMessage() for r in caplog.records] == [f"{ledger_path(path).name}: {said}"]


def test_damage_to_the_file_while_the_server_runs_costs_no_charge(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    """Live folds count what the process kept as it recorded, not what the file says."""
    path = path_of(database_url)
    operation_id = operation_of(engine, tenant.token_id)
    with connection(path) as conn:
        ledger = recorded(path, conn, tenant, operation_id, 5)
        ledger._map[ledger_module.HEADER_BYTES :] = bytes(8 * ledger_module.RECORD_BYTES)
        ledger.fold_alone(conn, *ledger.take())
        ledger.close()
    assert counted(engine, tenant.token_id, DAY) == 5


def test_the_ring_wraps_and_a_full_ledger_refuses_until_folded(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    path = path_of(database_url)
    operation_id = operation_of(engine, tenant.token_id)
    with connection(path) as conn:
        ledger = open_ledger(path, conn, capacity=4)
        for lap in range(3):
            for _ in range(4):
                assert ledger.append(tenant.token_id, DAY, operation_id, 1)
            assert not ledger.append(tenant.token_id, DAY, operation_id, 1)
            upto, totals = ledger.take()
            ledger.fold_alone(conn, upto, totals)
            ledger.folded = upto
            assert counted(engine, tenant.token_id, DAY) == 4 * (lap + 1)
        ledger.close()
        # The last lap's records, read back from the file as a restart would: none is new.
        reopened_and_folded(path, conn)
    assert counted(engine, tenant.token_id, DAY) == 12


def test_a_ledger_of_another_database_is_set_aside_and_not_counted(
    database_url: str,
    engine: Engine,
    tenant: Tenant,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = path_of(database_url)
    operation_id = operation_of(engine, tenant.token_id)
    with connection(path) as conn:
        first = open_ledger(path, conn)
        assert first.append(tenant.token_id, DAY, operation_id, 1)
        first.close()
        # The database is replaced by one whose mark names another ledger (a restore).
        conn.execute("UPDATE meta SET value = '7:0' WHERE key = 'charge_ledger'")
        caplog.set_level(logging.WARNING, logger="routing_points.store")
        second = open_ledger(path, conn)
        second.close()
    assert counted(engine, tenant.token_id, DAY) == 0
    assert second.epoch not in (first.epoch, 7)
    assert [r.getMessage() for r in caplog.records] == [
        f"{ledger_path(path).name} is missing or belongs to another database: a new one is "
        "started (charges it held unfolded, if any, are not counted)"
    ]


def request(token_id: int, operation_id: int) -> AdmitRequest:
    return admit_request(token_id, operation_id, day=DAY, now=time.time())


HOLD_THE_WRITE_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


@pytest.mark.anyio
async def test_with_the_ledger_full_a_charge_is_refused_at_once_and_none_is_lost(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    path = path_of(database_url)
    operation_id = operation_of(engine, tenant.token_id)
    reader = SqliteReader(path, ledger_capacity=3)
    limits = LocalLimits(reader)
    # The day's counters loaded and a first charge counted, as a running server has them.
    assert (await limits.admit(request(tenant.token_id, operation_id))).outcome is Outcome.ADMITTED
    await reader.fold_charges()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_THE_WRITE_LOCK,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert (await holder.stdout.readline()).strip() == b"locked"
        # Three fit in the ledger while the lock keeps every fold out...
        for _ in range(3):
            assert (
                await limits.admit(request(tenant.token_id, operation_id))
            ).outcome is Outcome.ADMITTED
        # ...the fourth is refused at once (the store's outage: a 503), taking nothing.
        with pytest.raises(StoreUnavailable, match="is full: SQLite cannot be written"):
            await asyncio.wait_for(limits.admit(request(tenant.token_id, operation_id)), 5)
        assert limits.in_flight(tenant.token_id) == 4
        holder.stdin.write(b"\n")
        await holder.wait()
        await asyncio.wait_for(reader.fold_charges(), 15)
        assert (
            await limits.admit(request(tenant.token_id, operation_id))
        ).outcome is Outcome.ADMITTED
        await reader.fold_charges()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await reader.close()
    assert counted(engine, tenant.token_id, DAY) == 5


def test_serve_refuses_a_ledger_it_cannot_write_in_one_line(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    ledger = ledger_path(path_of(database_url))
    ledger.mkdir()  # not a file: as unwritable as a read-only one, even for root
    done = cli("serve", "--database", database_url, "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: cannot write {ledger}, the server's charge ledger: Is a directory"
    ]
