"""SQLAlchemy Core tables: the single source of truth for the schema.

Timestamps are integer epoch seconds (UTC). They compare and convert the same way on
SQLite and PostgreSQL, and the hot path renders them in the operation's time zone
without parsing strings.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

operations = Table(
    "operations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("nomenclature", String(4), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("licenses", Integer, nullable=False),
    Column("timezone", String(64), nullable=False),
    # Bumped by every change to the operation or its routing points: ETags and cached
    # bodies are keyed by it, and every worker reads it with the token.
    Column("version", BigInteger, nullable=False, server_default="1"),
    # Random per operation, so a recreated database never reproduces an old ETag.
    Column("etag_salt", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # Space-separated CIDR networks the API may be called from; empty allows every address.
    Column("ip_allowlist", Text, nullable=False, server_default=""),
    CheckConstraint("licenses >= 1", name="licenses_positive"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "operation_id",
        Integer,
        ForeignKey("operations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("description", String(255), nullable=False, server_default=""),
    # SHA-256 of the secret: the secret itself is never stored.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("daily_limit", Integer, nullable=True),
    Column("scope", String(16), nullable=False, server_default="read"),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    # `tokens rotate`: the replaced secret's digest keeps working until this instant.
    Column("previous_secret_hash", String(64), nullable=True, unique=True, index=True),
    Column("previous_valid_until", BigInteger, nullable=True),
    # Past this instant the token is refused like a revoked one.
    Column("expires_at", BigInteger, nullable=True),
    CheckConstraint("daily_limit IS NULL OR daily_limit >= 1", name="daily_limit_positive"),
    CheckConstraint("scope IN ('read', 'admin')", name="scope_known"),
)

routing_points = Table(
    "routing_points",
    metadata,
    Column(
        "operation_id",
        Integer,
        ForeignKey("operations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("rp_id", BigInteger, primary_key=True, autoincrement=False),
    Column("rp_name", String(255), nullable=False),
    Column("ivr_active", Boolean, nullable=False, server_default="0"),
    Column("chat_active", Boolean, nullable=False, server_default="0"),
    Column("interaction_active", Boolean, nullable=False, server_default="0"),
    Column("crm_active", Boolean, nullable=False, server_default="0"),
    Column("last_use_at", BigInteger, nullable=True),
    # The record's JSON as served, or NULL while stale, and the operation's version when it
    # was kept: triggers null both when a value it was made from changes (migration 0006).
    Column("record_json", Text, nullable=True),
    Column("kept_version", BigInteger, nullable=True),
    CheckConstraint("rp_id > 0", name="rp_id_positive"),
    CheckConstraint("length(rp_name) BETWEEN 1 AND 255", name="rp_name_length"),
    Index("ix_routing_points_kept", "operation_id", "kept_version"),
)

# One row per token and local day: the operation's use is the sum over its tokens.
usage_counters = Table(
    "usage_counters",
    metadata,
    Column("token_id", Integer, ForeignKey("tokens.id", ondelete="CASCADE"), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column(
        "operation_id", Integer, ForeignKey("operations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("count", Integer, nullable=False),
    Index("ix_usage_counters_operation_day", "operation_id", "day"),
)

# Appended by the admin API; routing points' last_use follows the latest of them.
usage_events = Table(
    "usage_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "operation_id", Integer, ForeignKey("operations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("rp_id", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("at", BigInteger, nullable=False),
    CheckConstraint("channel IN ('ivr', 'chat', 'interaction', 'crm')", name="channel_known"),
    Index("ix_usage_events_operation_at", "operation_id", "at"),
)

# Platform tokens see every operation in the console; the API never accepts them.
platform_tokens = Table(
    "platform_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("description", String(255), nullable=False, server_default=""),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("expires_at", BigInteger, nullable=True),
)

# A console sign-in: the cookie carries the signed id, the store its digest, so every
# worker can verify it and sign-out revokes it at once.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_id", Integer, nullable=True),
    Column("platform_token_id", Integer, nullable=True),
    Column("csrf", String(64), nullable=False),
    Column("address", String(64), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

# Append-only: rows are only ever inserted, and deleted past the retention setting.
audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", BigInteger, nullable=False),
    Column("nomenclature", String(4), nullable=True),
    Column("actor", String(255), nullable=False),
    Column("address", String(64), nullable=False, server_default=""),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Index("ix_audit_log_nomenclature_at", "nomenclature", "at"),
    Index("ix_audit_log_at", "at"),
)

# Refusals per operation, local day and kind (concurrency, budget, interval, address).
refusal_counters = Table(
    "refusal_counters",
    metadata,
    Column("operation_id", Integer, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("count", Integer, nullable=False),
)
