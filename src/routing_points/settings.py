"""The one typed settings object of the server.

Every limit of the contract (section 6 of the API spec) is a setting here, with the
vendor's value (from `contract`) as its default, so tests and sandboxes can shrink them.
Every field has a `description`: the README's settings table is generated from them
(`scripts/settings-doc`) and a test keeps the two equal. Values come from
keyword arguments, then `ROUTING_POINTS_*` environment variables, then these defaults.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from routing_points import contract

DEFAULT_DATABASE_URL = "sqlite:///routing-points.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_POINTS_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="the store (`sqlite:///...` or `postgresql://...`)",
    )
    database_pool_size: int = Field(
        default=10, ge=1, description="PostgreSQL connections per worker"
    )
    database_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="how long to wait for a PostgreSQL connection (new, or from the pool)",
    )

    redis_url: str | None = Field(
        default=None,
        description="Redis for the limits (needed for several workers); "
        "unset, they live in the one server process",
    )
    redis_key_prefix: str = Field(
        default="rp", description="namespace of the limits' keys in Redis"
    )
    redis_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description="how long one Redis connect or command may take before Redis counts as down",
    )
    redis_fail_open: bool = Field(
        default=False,
        description="Redis down: serve without limits (true) or refuse with 503 (false)",
    )
    redis_cluster: bool = Field(
        default=False,
        description="the Redis URL names a node of a Redis Cluster: use a cluster client",
    )
    slot_lease_s: float = Field(
        default=5.0,
        ge=0.3,
        description="a concurrency slot held in Redis is a lease this long, renewed every "
        "third of it while its call runs: a dead worker's slots come back within it",
    )

    metrics_token: str | None = Field(
        default=None,
        description="bearer secret for `GET /metrics`; unset, it is off (it names operations)",
    )

    limits_enabled: bool = Field(
        default=True, description="switch admission limits (L8, L9) off (benchmarks)"
    )
    max_in_flight_per_token: int = Field(
        default=contract.MAX_IN_FLIGHT_PER_TOKEN,
        ge=1,
        description="L8, simultaneous requests per token",
    )
    daily_calls_per_license: int = Field(
        default=contract.DAILY_CALLS_PER_LICENSE,
        ge=1,
        description="L9, the daily budget is licenses x this",
    )
    max_records_per_response: int = Field(
        default=contract.MAX_RECORDS_PER_RESPONSE,
        ge=1,
        description="L3, records in one answer; more are reachable with `after`",
    )
    max_records_per_upload: int = Field(
        default=contract.MAX_RECORDS_PER_UPLOAD,
        ge=1,
        description="L4, admin uploads and event batches",
    )
    max_upload_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="the most one admin request body may weigh "
        "(far above 10,000 records, far below harm)",
    )
    max_date_range_days: int = Field(
        default=contract.MAX_DATE_RANGE_DAYS, ge=1, description="L5, the usage report"
    )
    max_response_bytes: int = Field(
        default=contract.MAX_RESPONSE_BYTES, ge=256, description="L6, the weight of one answer"
    )
    consumption_timeout_s: float = Field(
        default=contract.CONSUMPTION_TIMEOUT_S,
        gt=0,
        description="L7, the time one consumption may take",
    )
    poll_interval_s: int = Field(
        default=contract.POLL_INTERVAL_S,
        ge=0,
        description="L2, advertised in `X-Poll-Interval`",
    )
    min_poll_interval_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "L2 enforced per token and api; 0 is off. With Redis, a token's last call is kept "
            "when a server restarts; the embedded limits keep it in memory, so after a restart "
            "each token's first call is not held to it"
        ),
    )
    concurrency_retry_after_s: int = Field(
        default=1, ge=1, description="`retry-after` of a concurrency refusal (L8)"
    )

    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="bytes of a request line and headers together; more is refused with 431",
    )
    max_header_count: int = Field(
        default=100, ge=8, description="header fields of one request; more is refused with 431"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="seconds for a request's headers to arrive, else dropped"
    )
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="seconds a client may stop reading its answer before it is dropped",
    )

    body_cache_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=0,
        description="rendered answers kept per operation version, so unchanged reads "
        "skip the store",
    )

    sandbox_latency_ms: float = Field(
        default=0.0, ge=0, description="sandbox: delay inside every admitted call"
    )
    sandbox_failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="sandbox: share of admitted calls answered 503"
    )

    upstream_token: SecretStr | None = Field(
        default=None,
        description="the upstream's wolkvox-token for `routing-points mirror` (or use "
        "`--upstream-token-file`); never on the command line, where `ps` shows it",
    )

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
        min_length=32,
        description=(
            "Key that signs console cookies, at least 32 characters; unset, one is generated "
            "once and kept in the store, so every worker and host shares it."
        ),
    )
    audit_retention_days: int = Field(
        default=400, ge=1, description="Days the audit log keeps an entry."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="the server's log level: DEBUG, INFO, WARNING or ERROR"
    )
    access_log: bool = Field(default=True, description="one log line per request")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one human-readable line per record; json: one JSON object per line",
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("must be a sqlite:///PATH or postgresql://... URL")
        if value.startswith("sqlite:") and not value.partition(":///")[2].strip():
            raise ValueError("must name a file: sqlite:///PATH")
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError("is not a valid database URL") from None
        if url.drivername.startswith("postgresql+") and url.drivername != "postgresql+psycopg":
            # The server picks its drivers (psycopg, and asyncpg for the hot path).
            raise ValueError(f"names driver {url.drivername!r}: write postgresql://...")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        # Checked here, before anything starts: a bad entry was a traceback after the
        # database was made (and after `demo` had replaced its demo).
        for item in value.replace(",", " ").split():
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://HOST:PORT/DB (or rediss://, unix://) URL")
        if value.startswith("unix://"):
            return value
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 (a port that is no number or out of range raises)
        except ValueError:
            raise ValueError("has a port that is not a number from 1 to 65535") from None
        database = parts.path.strip("/")
        if database and not (database.isascii() and database.isdigit()):
            # redis-py would quietly use database 0, shared with whatever else uses it.
            raise ValueError(f"names database {database!r}: it must be a number, as in /0")
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


ENV_PREFIX = "ROUTING_POINTS_"
# Variables of this prefix that are not settings: the client commands' token, and the
# test suite's own (ROUTING_POINTS_TEST_*).
NOT_SETTINGS = frozenset({"ROUTING_POINTS_TOKEN"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """`ROUTING_POINTS_*` variables that name no setting, each with the nearest that does:
    a typo would otherwise leave the default in force without a word."""
    known = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in NOT_SETTINGS:
            continue
        if upper.startswith(f"{ENV_PREFIX}TEST_"):
            continue
        near = difflib.get_close_matches(upper, known, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        problems.append(f"{name} is not a setting{hint}")
    return problems
