"""PostgreSQL under contention or out of resources: no deadlock, and the contract's 503
(never a 500) while it is out of connections, then recovery alone."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, make_url

from routing_points.store import migrate
from routing_points.store.engine import create_sync_engine
from routing_points.store.points import upsert_points
from tests.support.seed import add_tenant, point
from tests.support.servers import LiveServer, headers, make_settings
from tests.support.services import POSTGRES_ADMIN_URL
from tests.support.wire import ENDPOINT

POINTS = f"{ENDPOINT}?api=routing_points"
ROLE_CONNECTIONS = 6


@pytest.fixture
def limited_url(postgres_url: str) -> Iterator[str]:
    """The test's database, owned by a role of its own allowed ROLE_CONNECTIONS connections."""
    role = f"rp_role_{secrets.token_hex(4)}"
    database = make_url(postgres_url).database
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {ROLE_CONNECTIONS}")
        admin.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
    yield make_url(postgres_url).set(username=role).render_as_string(False)
    with psycopg.connect(postgres_url, autocommit=True) as owner_side:
        owner_side.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role]
        )
        owner_side.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        owner_side.execute(f"DROP OWNED BY {role}")
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" OWNER TO CURRENT_USER')
        admin.execute(f"DROP ROLE {role}")


def test_a_database_out_of_connections_answers_503_then_recovers(limited_url: str) -> None:
    engine = create_sync_engine(limited_url)
    migrate.upgrade(engine)
    tenant = add_tenant(engine, "0032", [point(1)])
    engine.dispose()
    server = LiveServer(make_settings(limited_url, database_timeout_s=2)).start()
    hogs: list[psycopg.Connection[tuple[object, ...]]] = []
    try:
        # Every connection the role may still open, taken: the server's next one is refused.
        refusal = ""
        while not refusal:
            try:
                hogs.append(psycopg.connect(limited_url, autocommit=True))
            except psycopg.OperationalError as exc:
                refusal = str(exc)
        assert "too many connections" in refusal
        with httpx.Client(base_url=server.url, timeout=30) as http:
            refused = http.get(POINTS, headers=headers(tenant.token))
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == 503
            for hog in hogs:
                hog.close()
            hogs.clear()
            assert http.get(POINTS, headers=headers(tenant.token)).status_code == 200
    finally:
        for hog in hogs:
            hog.close()
        server.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_bulk_writes_in_opposite_orders_never_deadlock(engine: Engine) -> None:
    add_tenant(engine, "0032", [point(rp_id) for rp_id in (3, 6)])
    failures: list[BaseException] = []

    def write(order: tuple[int, int]) -> None:
        for round_ in range(150):
            try:
                upsert_points(
                    engine, "0032", [point(rp_id, f"{order} {round_}") for rp_id in order]
                )
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=write, args=(order,)) for order in ((3, 6), (6, 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
