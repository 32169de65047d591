"""The console: expiring tokens, IP allow-lists, platform tokens, sessions, audit, refusals.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite): the hot path reads both with the token.
    op.add_column("tokens", sa.Column("expires_at", sa.BigInteger, nullable=True))
    op.add_column(
        "operations",
        sa.Column("ip_allowlist", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "platform_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("secret_hash", name="uq_platform_tokens_secret_hash"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.Integer, nullable=True),
        sa.Column("platform_token_id", sa.Integer, nullable=True),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("nomenclature", sa.String(4), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("address", sa.String(64), nullable=False, server_default=""),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_audit_log_nomenclature_at", "audit_log", ["nomenclature", "at"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "refusal_counters",
        sa.Column("operation_id", sa.Integer, primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("refusal_counters")
    op.drop_table("audit_log")
    op.drop_table("console_sessions")
    op.drop_table("platform_tokens")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("ip_allowlist")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("expires_at")
