"""Logs cannot be forged and hold no secret; /readyz names no host (real servers)."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from routing_points.settings import Settings
from tests.support.faults import PrivateRedis
from tests.support.processes import ServerProcess
from tests.support.seed import Tenant
from tests.support.servers import LiveServer, make_settings
from tests.support.services import free_port
from tests.support.wire import ENDPOINT

FORGED = "/x%0a2026-01-01%2000:00:00,000%20INFO%20routing_points.access:%20GET%20/a%20200%1b[31m"


def send_raw(port: int, target: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass


def test_access_lines_escape_the_raw_path_and_redact_tokens(
    database_url: str, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="routing_points.access")
    server = LiveServer(Settings(database_url=database_url)).start()
    try:
        send_raw(server.port, FORGED.encode())
        send_raw(server.port, b"/y\\x0a%E2%80%AE")
        query = f"api=token_info&wolkvox-token={tenant.token}&Token=s2&wolkvox_token=s3&%74oken=s4"
        httpx.get(f"{server.url}{ENDPOINT}?{query}")
    finally:
        server.stop()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert all("\n" not in line and "\x1b" not in line for line in lines)
    # The path as sent, still percent-encoded: the fake line stays inside the first one.
    assert lines[0].startswith("GET /x%0a2026-01-01%2000:00:00,000%20INFO")
    assert "%1b[31m" in lines[0]
    # A backslash is escaped too, so "\x0a" in a line is always the server's own escape.
    assert lines[1].startswith("GET /y\\\\x0a%E2%80%AE ")
    assert tenant.token not in lines[2]
    for secret in ("s2", "s3", "s4"):
        assert f"={secret}" not in lines[2]
    assert (
        "wolkvox-token=REDACTED&Token=REDACTED&wolkvox_token=REDACTED&%74oken=REDACTED"
        in (lines[2])
    )


def access_records(text: str) -> list[dict[str, Any]]:
    records = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    return [record for record in records if record["logger"] == "routing_points.access"]


def test_json_lines_from_a_real_server_process(
    tmp_path: Path, tenant: Tenant, database_url: str
) -> None:
    port = free_port()
    server = ServerProcess(
        "serve",
        "--database",
        database_url,
        port=port,
        env={"ROUTING_POINTS_LOG_FORMAT": "json"},
    ).wait_ready()
    try:
        send_raw(port, FORGED.encode())
        httpx.get(f"{server.url}{ENDPOINT}?api=token_info&token={tenant.token}")
        # The access line is written once the answer is sent: the client may read it first.
        deadline = time.monotonic() + 30
        while True:
            server.log.seek(0)
            text = server.log.read()
            text = text[: text.rfind("\n") + 1]  # whole lines only
            if len(access_records(text)) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        assert server.stop()
    records = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert records, "no log lines"
    access = access_records(text)
    assert [record["status"] for record in access] == [404, 401]
    assert access[0]["target"].startswith("/x%0a2026-01-01")
    assert access[1]["target"] == f"{ENDPOINT}?api=token_info&token=REDACTED"
    assert tenant.token not in text
    # uvicorn's own lines are JSON too.
    assert any(record["logger"].startswith("uvicorn") for record in records)


def test_readyz_names_the_dependency_never_its_address(tmp_path: Path, database_url: str) -> None:
    redis = PrivateRedis(tmp_path).start()
    server = LiveServer(make_settings(database_url, redis_url=redis.url)).start()
    try:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        redis.stop()
        response = httpx.get(f"{server.url}/readyz", timeout=30)
    finally:
        server.stop()
        redis.stop()
    assert response.status_code == 503
    assert response.json()["data"] == {"store": "ok", "limits": "unavailable"}
    assert str(redis.port) not in response.text
    assert "127.0.0.1" not in response.text
