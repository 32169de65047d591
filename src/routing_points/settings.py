"""The one typed settings object of the server.

Every limit of the contract (section 6 of the API spec) is a setting here, with the
vendor's value as its default, so tests and sandboxes can shrink them. Values come from
keyword arguments, then `ROUTING_POINTS_*` environment variables, then these defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///routing-points.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_POINTS_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL: the pool of each worker, and how long to wait for the database.
    database_pool_size: int = Field(default=10, ge=1)
    database_timeout_s: float = Field(default=5.0, gt=0)

    # Redis holds the limits' state when set; otherwise they live in the one server process.
    redis_url: str | None = None
    redis_key_prefix: str = "rp"
    redis_timeout_s: float = Field(default=1.0, gt=0)
    # Redis unreachable: refuse with 503 (the default), or serve without limits.
    redis_fail_open: bool = False
    # A concurrency slot outlives the time limit by this much if its holder dies.
    lease_margin_s: float = Field(default=5.0, ge=0)

    # GET /metrics is off unless a bearer secret is set: it names operations.
    metrics_token: str | None = None

    # L8, L9: admission.
    limits_enabled: bool = True
    max_in_flight_per_token: int = Field(default=2, ge=1)
    daily_calls_per_license: int = Field(default=1000, ge=1)
    # L3, L4, L5, L6, L7.
    max_records_per_response: int = Field(default=60_000, ge=1)
    max_records_per_upload: int = Field(default=10_000, ge=1)
    # Bytes of one admin request body: far above 10,000 records, far below harm.
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_date_range_days: int = Field(default=31, ge=1)
    max_response_bytes: int = Field(default=256 * 1024 * 1024, ge=256)
    consumption_timeout_s: float = Field(default=60.0, gt=0)
    # L2: advertised always, enforced only when min_poll_interval_s > 0.
    poll_interval_s: int = Field(default=300, ge=0)
    min_poll_interval_s: float = Field(default=0.0, ge=0)
    # How long a client should wait after a concurrency refusal.
    concurrency_retry_after_s: int = Field(default=1, ge=1)

    # Rendered bodies kept per operation version, so unchanged reads skip the store.
    body_cache_bytes: int = Field(default=128 * 1024 * 1024, ge=0)

    # Sandbox fault injection: integrators see how their clients cope.
    sandbox_latency_ms: float = Field(default=0.0, ge=0)
    sandbox_failure_rate: float = Field(default=0.0, ge=0, le=1)

    # The console, IP allow-lists and the audit log.
    trusted_proxies: str = Field(
        default="",
        description=(
            "Comma-separated addresses or CIDR networks of reverse proxies whose "
            "X-Forwarded-For is believed; from anyone else the header is ignored."
        ),
    )
    console_session_ttl_s: int = Field(
        default=8 * 3600,
        ge=60,
        description="How long a console sign-in lasts before it must be made again (seconds).",
    )
    console_secret: str | None = Field(
        default=None,
        description=(
            "Key that signs console cookies; unset, one is generated once and kept in the "
            "store, so every worker and host shares it."
        ),
    )
    audit_retention_days: int = Field(
        default=400, ge=1, description="Days the audit log keeps an entry."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("database_url must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path:
        """The file behind a `sqlite:///` URL (relative to the working folder)."""
        if not self.is_sqlite:
            raise ValueError("not a SQLite database URL")
        return Path(self.database_url.split(":///", 1)[1])
