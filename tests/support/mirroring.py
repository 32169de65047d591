"""Helpers of the mirror tests: a second server of ours as the upstream, a mirror beside it.

The upstream's own usage counters (what it charged the mirror's token) are the proof that
local consumers cost it nothing beyond the mirror's schedule.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from routing_points.mirror import Mirror, MirrorConfig
from routing_points.store import migrate
from routing_points.store.engine import create_sync_engine
from routing_points.store.replace import replace_points
from routing_points.store.schema import usage_counters
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, make_settings
from tests.support.services import until_charges_counted
from tests.support.wire import ENDPOINT

UPSTREAM = "0032"
METRICS_TOKEN = "mirror-metrics-secret"
# Generous: the machine is shared; nothing here asserts speed.
PATIENCE_S = 60.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Upstream:
    server: LiveServer
    engine: Engine
    tenant: Tenant

    @property
    def url(self) -> str:
        return self.server.url

    def charges(self) -> int:
        """What the upstream charged the mirror's token: its own usage counters."""
        until_charges_counted(self.server.settings.database_url)
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(usage_counters.c.count), 0)).where(
                    usage_counters.c.token_id == self.tenant.token_id
                )
            ).scalar_one()
        return int(total)

    def replace(self, records: list[dict[str, Any]]) -> None:
        replace_points(self.engine, UPSTREAM, records)


def start_upstream(
    tmp_path: Path,
    records: list[dict[str, Any]],
    licenses: int = 100,
    clock: Any = None,
    **overrides: Any,
) -> Upstream:
    url = f"sqlite:///{tmp_path / 'upstream.db'}"
    engine = create_sync_engine(url)
    migrate.upgrade(engine)
    # 100 licenses: a budget that allows a 1 s schedule within the mirror's share.
    tenant = add_tenant(engine, UPSTREAM, records, licenses=licenses)
    settings = make_settings(url, poll_interval_s=1, **overrides)
    server = LiveServer(settings) if clock is None else LiveServer(settings, clock=clock)
    return Upstream(server.start(), engine, tenant)


def default_points() -> list[dict[str, Any]]:
    return [
        point(101, "Sales line", last_use="2026-11-20 14:03:11"),
        point(102, "Support chat", ivr_active="no", chat_active="yes"),
        point(1000, "Night shift", interaction_active="no", crm_active="yes"),
    ]


@dataclass
class LocalMirror:
    server: LiveServer
    mirror: Mirror
    engine: Engine
    token: str

    @property
    def url(self) -> str:
        return self.server.url + ENDPOINT + "?api=routing_points"

    http: httpx.Client

    def get(self, **headers: str) -> httpx.Response:
        return self.http.get(self.url, headers={"wolkvox-token": self.token, **headers})

    def requests(self, *results: str) -> int:
        counted = self.mirror.state.requests
        return sum(counted.values()) if not results else sum(counted[r] for r in results)

    def synced(self) -> bool:
        return self.mirror.state.synced_at is not None


@contextlib.contextmanager
def running_mirror(database_url: str, upstream: Upstream, **config: Any) -> Iterator[LocalMirror]:
    settings_extra = config.pop("settings", {})
    engine = create_sync_engine(database_url)
    migrate.upgrade(engine)
    # The local operation and the local consumers' token, with a budget of their own.
    local = add_tenant(engine, UPSTREAM, licenses=1000)
    mirror = Mirror(
        MirrorConfig(
            upstream_server=UPSTREAM,
            token=upstream.tenant.token,
            base_url=upstream.url,
            **{"every_s": 1, "budget_share": 1.0, "max_backoff_s": 2, **config},
        )
    )
    settings = make_settings(database_url, metrics_token=METRICS_TOKEN, **settings_extra)
    server = LiveServer(settings, addon=mirror).start()
    http = httpx.Client(timeout=30)
    try:
        yield LocalMirror(server, mirror, engine, local.token, http)
    finally:
        http.close()
        server.stop()
        engine.dispose()


def data(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def upstream_data(upstream: Upstream) -> list[dict[str, str]]:
    return data(
        httpx.get(
            upstream.url + ENDPOINT,
            params={"api": "routing_points"},
            headers={"wolkvox-token": upstream.tenant.token},
        )
    )
