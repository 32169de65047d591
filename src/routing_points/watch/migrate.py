"""Apply the watcher history's own Alembic migrations, on open.

A history file written before the history was migrated (its tables made by
`create_all`, no version table) is stamped with the revision that describes that
schema, then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, inspect

from routing_points.watch.schema import metadata

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "watch_alembic_version"
# The revision whose schema `create_all` made before the history was migrated.
CREATE_ALL_REVISION = "h0001"
_TABLES = ("watch_snapshots", "watch_events", "watch_stale")


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """Bring the history to the newest schema; a no-op when it already is."""
    with engine.begin() as connection:
        config = alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE not in tables and tables.intersection(_TABLES):
            _create_all_schema(connection)
            command.stamp(config, CREATE_ALL_REVISION)
        command.upgrade(config, "head")


def _create_all_schema(connection: Connection) -> None:
    """What the unmigrated history did on every open: create whichever table is missing."""
    metadata.create_all(connection)
