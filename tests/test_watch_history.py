"""The watcher's history is migrated with Alembic, and a history from before that still opens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, insert, inspect, text

from routing_points.store.engine import create_sync_engine
from routing_points.watch.diff import Change
from routing_points.watch.history import History
from routing_points.watch.migrate import CREATE_ALL_REVISION, VERSION_TABLE
from routing_points.watch.schema import events, metadata, snapshots

RECORD = {"rp_id": "101", "rp_name": "Sales line"}


def _version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one())


def _shape(engine: Engine, table: str) -> dict[str, Any]:
    found = inspect(engine)
    return {
        "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
        "key": found.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted((i["name"], tuple(i["column_names"])) for i in found.get_indexes(table)),
    }


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_new_history_is_created_by_the_migrations(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store == "postgresql":
        location = str(request.getfixturevalue("postgres_url"))
    else:
        location = str(tmp_path / "history.db")
    history = History(location)
    try:
        tables = set(inspect(history.engine).get_table_names())
        assert tables == {*metadata.tables, VERSION_TABLE}
        assert _version(history.engine) == CREATE_ALL_REVISION
        # Opening it again is a no-op.
        History(location).close()
        assert _version(history.engine) == CREATE_ALL_REVISION
    finally:
        history.close()


def test_the_migrated_schema_is_the_one_create_all_made(tmp_path: Path) -> None:
    migrated = History(str(tmp_path / "migrated.db"))
    legacy = create_sync_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    metadata.create_all(legacy)
    try:
        for table in metadata.tables:
            assert _shape(migrated.engine, table) == _shape(legacy, table), table
    finally:
        migrated.close()
        legacy.dispose()


def test_a_history_made_by_create_all_is_stamped_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    legacy = create_sync_engine(f"sqlite:///{path}")
    metadata.create_all(legacy)  # what the watcher did before its history was migrated
    with legacy.begin() as conn:
        snapshot_id = conn.execute(
            insert(snapshots)
            .values(server="0032", taken_at=1.0, etag='"v1"', records=orjson.dumps([RECORD]))
            .returning(snapshots.c.id)
        ).scalar_one()
        conn.execute(
            insert(events).values(
                server="0032",
                snapshot_id=snapshot_id,
                at=1.0,
                kind="added",
                rp_id=101,
                rp_name="Sales line",
            )
        )
    legacy.dispose()

    reopened = History(str(path))
    try:
        assert _version(reopened.engine) == CREATE_ALL_REVISION
        latest = reopened.latest("0032")
        assert latest is not None
        assert (latest.etag, latest.records) == ('"v1"', [RECORD])
        reopened.record(
            "0032",
            [Change("removed", 101, "Sales line")],
            records=[],
            etag=None,
            stale=set(),
            now=2,
        )
        kinds = [event.change.kind for event in reopened.timeline("0032", None, None)]
        assert kinds == ["added", "removed"]
    finally:
        reopened.close()
    # Opening it again is a no-op.
    again = History(str(path))
    again.close()
