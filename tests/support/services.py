"""The shared PostgreSQL and Redis, free ports, and skipping where a service is missing."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from routing_points.store.ledger import pending_charges

RUNNING_IN_CI = os.environ.get("CI") == "true"
POSTGRES_ADMIN_URL = os.environ.get(
    "ROUTING_POINTS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("ROUTING_POINTS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def service_missing(what: str, exc: BaseException) -> NoReturn:
    """Skip where the service is not installed; in CI a missing service is a failure."""
    if RUNNING_IN_CI:
        pytest.fail(f"{what} is required in CI and is not reachable: {exc}")
    pytest.skip(f"{what} is not reachable here ({exc}); CI runs these tests against it")


@dataclass
class RedisNamespace:
    url: str
    prefix: str
    cluster: bool = False

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"redis_url": self.url, "redis_key_prefix": self.prefix}
        if self.cluster:
            settings["redis_cluster"] = True
        return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    """A port of 127.0.0.1 that something listens on while the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def until_charges_counted(database_url: str, timeout_s: float = 10) -> None:
    """Wait until the embedded store's usage counters count every charge its server has
    recorded: they reach them from the charge ledger within a fold (50 ms)."""
    if not database_url.startswith("sqlite:///"):
        return  # PostgreSQL's counters are written before the answer
    database = Path(database_url.removeprefix("sqlite:///"))
    deadline = time.monotonic() + timeout_s
    while (pending := pending_charges(database)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pending == 0, f"{pending} charges still not counted after {timeout_s} s"
