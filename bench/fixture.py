"""The data every case reads: operation 0001 (25 points, many tokens) and 0002 (60,000)."""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT

POSTGRES_ADMIN = os.environ.get("ROUTING_POINTS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


@dataclass
class Fixture:
    database: str
    small_tokens: list[str]
    big_token: str


def record(rp_id: int) -> dict[str, str]:
    return {
        "rp_id": str(rp_id),
        "rp_name": f"Routing point {rp_id}",
        "ivr_active": "yes" if rp_id % 2 else "no",
        "chat_active": "no",
        "interaction_active": "yes",
        "crm_active": "yes" if rp_id % 3 else "no",
        "last_use": ""
        if rp_id % 7 == 0
        else f"2026-11-{1 + rp_id % 27:02d} 10:{rp_id % 60:02d}:00",
    }


def seed(database: str, tokens: int) -> Fixture:
    sys.path.insert(0, str(ROOT / "src"))
    from routing_points.store import migrate, tenants
    from routing_points.store import points as point_store
    from routing_points.store.engine import create_sync_engine

    engine = create_sync_engine(database)
    migrate.upgrade(engine)
    tenants.add_operation(engine, "0001", "Bench small", 10_000, "America/Bogota")
    tenants.add_operation(engine, "0002", "Bench big", 10_000, "America/New_York")
    point_store.upsert_points(engine, "0001", [record(i) for i in range(101, 126)])
    point_store.upsert_points(engine, "0002", [record(i) for i in range(1, 60_001)])
    small = [tenants.add_token(engine, "0001", f"bench {i}").secret for i in range(tokens)]
    big = tenants.add_token(engine, "0002", "bench big").secret
    engine.dispose()
    return Fixture(database, small, big)


def add_tokens(database: str, server: str, count: int) -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from routing_points.store import tenants
    from routing_points.store.engine import create_sync_engine

    engine = create_sync_engine(database)
    tokens = [tenants.add_token(engine, server, f"bench {i}").secret for i in range(count)]
    engine.dispose()
    return tokens


def set_point_name(database: str, server: str, rp_id: int, name: str) -> None:
    """A change through the store, as an admin would make it: the next read is cold."""
    sys.path.insert(0, str(ROOT / "src"))
    from routing_points.store import points as point_store
    from routing_points.store.engine import create_sync_engine

    engine = create_sync_engine(database)
    point_store.set_point(engine, server, rp_id, {"rp_name": name})
    engine.dispose()


def postgres_database() -> str | None:
    """A database of the benchmark's own, or None (with the reason printed)."""
    try:
        import psycopg

        name = f"rp_bench_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"B4 skipped: PostgreSQL is not reachable ({exc})")
        return None
    from sqlalchemy.engine import make_url

    return str(make_url(POSTGRES_ADMIN).set(database=name).render_as_string(False))


def drop_postgres(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stamp_baseline(path: Path, src: Path) -> None:
    """Mark a copy of the bench database as migrated to the baseline tree's newest revision.

    The baseline reads and writes the same tables; the columns and tables it does not know
    are left alone, so its server starts on our data without downgrading anything."""
    versions = src / "routing_points" / "store" / "migrations" / "versions"
    revisions = {
        found.group(1)
        for file in versions.glob("*.py")
        if (found := re.search(r'^revision = "([^"]+)"', file.read_text(), re.MULTILINE))
    }
    parents = {
        found.group(1)
        for file in versions.glob("*.py")
        if (found := re.search(r'^down_revision = "([^"]+)"', file.read_text(), re.MULTILINE))
    }
    (head,) = revisions - parents
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (head,))
