"""Alembic environment of the watcher's history: runs on the connection `watch.migrate` hands in.

Its own version table, so a history kept in the same database as a store never mixes
its revisions with the store's.
"""

from __future__ import annotations

from alembic import context

from routing_points.watch.migrate import VERSION_TABLE
from routing_points.watch.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
