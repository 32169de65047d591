"""Each routing point keeps its record's JSON, so a page is one concatenation in the database.

`record_json` is the contract's record exactly as the server encodes it (last_use on the
operation's wall clock), or NULL while it is stale; `kept_version` is the operation's
version when it was kept (NULL with it). Triggers make a record stale whatever the writer
(the API, the CLI, the console, the mirror, a hand-written UPDATE): a change to a point's
values, or to its operation's time zone, nulls both in the same statement, so no stale
JSON can outlive the change that made it so. The server renders the stale records of a
page it serves and keeps them (store/sqlite.py, store/postgres.py); a server holding a
page of an earlier version asks only for the records stale or kept since
(server/joined_pages.py), through the index on (operation_id, kept_version).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Every column a record is made from.
VALUE_COLUMNS = (
    "operation_id",
    "rp_id",
    "rp_name",
    "ivr_active",
    "chat_active",
    "interaction_active",
    "crm_active",
    "last_use_at",
)

_SQLITE_POINT_TRIGGER = f"""
CREATE TRIGGER routing_points_record_stale
AFTER UPDATE OF {", ".join(VALUE_COLUMNS)} ON routing_points
FOR EACH ROW WHEN NEW.record_json IS NOT NULL AND ({
    " OR ".join(f"NEW.{column} IS NOT OLD.{column}" for column in VALUE_COLUMNS)
})
BEGIN
    UPDATE routing_points SET record_json = NULL, kept_version = NULL
    WHERE operation_id = NEW.operation_id AND rp_id = NEW.rp_id;
END
"""

_SQLITE_ZONE_TRIGGER = """
CREATE TRIGGER operations_record_stale
AFTER UPDATE OF timezone ON operations
FOR EACH ROW WHEN NEW.timezone IS NOT OLD.timezone
BEGIN
    UPDATE routing_points SET record_json = NULL, kept_version = NULL
    WHERE operation_id = NEW.id AND record_json IS NOT NULL;
END
"""

_POSTGRES_FUNCTIONS = f"""
CREATE FUNCTION routing_points_record_stale() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF ({", ".join(f"NEW.{column}" for column in VALUE_COLUMNS)})
       IS DISTINCT FROM ({", ".join(f"OLD.{column}" for column in VALUE_COLUMNS)}) THEN
        NEW.record_json := NULL;
        NEW.kept_version := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION operations_record_stale() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE routing_points SET record_json = NULL, kept_version = NULL
    WHERE operation_id = NEW.id AND record_json IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER routing_points_record_stale
BEFORE UPDATE ON routing_points
FOR EACH ROW EXECUTE FUNCTION routing_points_record_stale();
CREATE TRIGGER operations_record_stale
AFTER UPDATE OF timezone ON operations
FOR EACH ROW WHEN (NEW.timezone IS DISTINCT FROM OLD.timezone)
EXECUTE FUNCTION operations_record_stale();
"""


def upgrade() -> None:
    op.add_column("routing_points", sa.Column("record_json", sa.Text, nullable=True))
    op.add_column("routing_points", sa.Column("kept_version", sa.BigInteger, nullable=True))
    # Finds the records stale (NULL) or kept since a version without reading the others.
    op.create_index("ix_routing_points_kept", "routing_points", ["operation_id", "kept_version"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_FUNCTIONS)
    else:
        op.execute(_SQLITE_POINT_TRIGGER)
        op.execute(_SQLITE_ZONE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS routing_points_record_stale ON routing_points")
        op.execute("DROP TRIGGER IF EXISTS operations_record_stale ON operations")
        op.execute("DROP FUNCTION IF EXISTS routing_points_record_stale()")
        op.execute("DROP FUNCTION IF EXISTS operations_record_stale()")
    else:
        op.execute("DROP TRIGGER IF EXISTS routing_points_record_stale")
        op.execute("DROP TRIGGER IF EXISTS operations_record_stale")
    op.drop_index("ix_routing_points_kept", table_name="routing_points")
    with op.batch_alter_table("routing_points") as batch:
        batch.drop_column("kept_version")
        batch.drop_column("record_json")
