"""Token rotation: the previous secret's digest, accepted until a moment (the grace period).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("previous_secret_hash", sa.String(64), nullable=True))
    op.add_column("tokens", sa.Column("previous_valid_until", sa.BigInteger, nullable=True))
    op.create_index(
        "ix_tokens_previous_secret_hash", "tokens", ["previous_secret_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_tokens_previous_secret_hash", table_name="tokens")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("previous_valid_until")
        batch.drop_column("previous_secret_hash")
