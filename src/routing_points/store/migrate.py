"""Apply the Alembic migrations that ship inside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema; a no-op when it already is."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Workers starting together on a new database: one migrates, the others wait for
            # it inside this transaction and then find nothing left to do.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('routing-points:migrate'))")
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
