"""The watcher's history: snapshots, events (the webhook queue) and stale points.

The schema `create_all` made before the history was migrated; such a file is stamped
with this revision when first opened.

Revision ID: h0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "h0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("server", sa.String(8), nullable=False),
        sa.Column("taken_at", sa.Float, nullable=False),
        sa.Column("etag", sa.String(128), nullable=True),
        sa.Column("records", sa.Text, nullable=False),
    )
    op.create_index("ix_watch_snapshots_server", "watch_snapshots", ["server", "id"])
    op.create_table(
        "watch_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("server", sa.String(8), nullable=False),
        sa.Column("snapshot_id", sa.Integer, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rp_id", sa.BigInteger, nullable=False),
        sa.Column("rp_name", sa.String(255), nullable=False),
        sa.Column("field", sa.String(32), nullable=True),
        sa.Column("old", sa.Text, nullable=True),
        sa.Column("new", sa.Text, nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
    )
    op.create_index("ix_watch_events_server", "watch_events", ["server", "id"])
    op.create_index("ix_watch_events_undelivered", "watch_events", ["delivered_at", "id"])
    op.create_table(
        "watch_stale",
        sa.Column("server", sa.String(8), primary_key=True),
        sa.Column("rp_id", sa.BigInteger, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("watch_stale")
    op.drop_table("watch_events")
    op.drop_table("watch_snapshots")
