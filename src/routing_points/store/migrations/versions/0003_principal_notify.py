"""PostgreSQL tells every worker when a token or an operation changes (LISTEN/NOTIFY).

Statement-level triggers NOTIFY the channel `routing_points_principals` at commit, so each
worker's principal cache forgets what it knew (store/principals.py). SQLite needs none of
this: one process serves a file, and it watches `PRAGMA data_version`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("tokens", "operations")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION routing_points_notify_principals() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('routing_points_principals', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_notify_principals "
            f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION routing_points_notify_principals()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify_principals ON {table}")
    op.execute("DROP FUNCTION IF EXISTS routing_points_notify_principals()")
