"""Usage events of routing points, appended by the admin API.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "operation_id",
            sa.Integer,
            sa.ForeignKey(
                "operations.id", ondelete="CASCADE", name="fk_usage_events_operation_id_operations"
            ),
            nullable=False,
        ),
        sa.Column("rp_id", sa.BigInteger, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "channel IN ('ivr', 'chat', 'interaction', 'crm')", name="ck_usage_events_channel_known"
        ),
    )
    op.create_index("ix_usage_events_operation_at", "usage_events", ["operation_id", "at"])


def downgrade() -> None:
    op.drop_table("usage_events")
