"""Operations, tokens, routing points and daily usage counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "operations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("nomenclature", sa.String(4), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("licenses", sa.Integer, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("etag_salt", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint("licenses >= 1", name="ck_operations_licenses_positive"),
        sa.UniqueConstraint("nomenclature", name="uq_operations_nomenclature"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "operation_id",
            sa.Integer,
            sa.ForeignKey(
                "operations.id", ondelete="CASCADE", name="fk_tokens_operation_id_operations"
            ),
            nullable=False,
        ),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("daily_limit", sa.Integer, nullable=True),
        sa.Column("scope", sa.String(16), nullable=False, server_default="read"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.CheckConstraint(
            "daily_limit IS NULL OR daily_limit >= 1", name="ck_tokens_daily_limit_positive"
        ),
        sa.CheckConstraint("scope IN ('read', 'admin')", name="ck_tokens_scope_known"),
        sa.UniqueConstraint("secret_hash", name="uq_tokens_secret_hash"),
    )
    op.create_index("ix_tokens_operation_id", "tokens", ["operation_id"])
    op.create_table(
        "routing_points",
        sa.Column(
            "operation_id",
            sa.Integer,
            sa.ForeignKey(
                "operations.id",
                ondelete="CASCADE",
                name="fk_routing_points_operation_id_operations",
            ),
            primary_key=True,
        ),
        sa.Column("rp_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("rp_name", sa.String(255), nullable=False),
        sa.Column("ivr_active", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("chat_active", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("interaction_active", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("crm_active", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("last_use_at", sa.BigInteger, nullable=True),
        sa.CheckConstraint("rp_id > 0", name="ck_routing_points_rp_id_positive"),
        sa.CheckConstraint(
            "length(rp_name) BETWEEN 1 AND 255", name="ck_routing_points_rp_name_length"
        ),
    )
    op.create_table(
        "usage_counters",
        sa.Column(
            "token_id",
            sa.Integer,
            sa.ForeignKey(
                "tokens.id", ondelete="CASCADE", name="fk_usage_counters_token_id_tokens"
            ),
            primary_key=True,
        ),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column(
            "operation_id",
            sa.Integer,
            sa.ForeignKey(
                "operations.id",
                ondelete="CASCADE",
                name="fk_usage_counters_operation_id_operations",
            ),
            nullable=False,
        ),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("ix_usage_counters_operation_day", "usage_counters", ["operation_id", "day"])


def downgrade() -> None:
    op.drop_table("usage_counters")
    op.drop_table("routing_points")
    op.drop_table("tokens")
    op.drop_table("operations")
    op.drop_table("meta")
