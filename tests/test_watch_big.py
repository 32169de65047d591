"""`watch` on a big operation (70,000 points): Ctrl-C cuts a poll short even mid-download,
and a metrics scrape stays small (aggregates by default, per-point series opt-in)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.support.processes import COMMAND, cli, wait_for_port
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, make_settings
from tests.support.services import free_port

pytestmark = pytest.mark.slow

BIG = 70_000
CHUNK = 256 * 1024
CHUNK_PAUSE_S = 0.5


@pytest.fixture
def big(engine: Engine) -> Tenant:
    points = [
        point(i, f"Point {i}", ivr_active="yes" if i % 2 else "no") for i in range(1, BIG + 1)
    ]
    return add_tenant(engine, "0032", points, licenses=1000)


class SlowBody:
    """ASGI middleware sending every body in 256 KiB chunks, half a second apart: a 70,000-
    point operation (about 10 MB) then takes about 20 s to download."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.started = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def slow_send(message: dict[str, Any]) -> None:
            if message["type"] != "http.response.body" or scope["path"] == "/readyz":
                await send(message)
                return
            body, more = message.get("body", b""), message.get("more_body", False)
            for start in range(0, len(body), CHUNK):
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[start : start + CHUNK],
                        "more_body": more or start + CHUNK < len(body),
                    }
                )
                self.started.set()
                await asyncio.sleep(CHUNK_PAUSE_S)
            if not body:
                await send(message)

        await self.app(scope, receive, slow_send)


def watch_command(server: LiveServer, tenant: Tenant, history: Path, *extra: str) -> list[str]:
    return [
        *COMMAND,
        "watch",
        "--server",
        tenant.server,
        "--token",
        tenant.token,
        "--base-url",
        server.url,
        "--history",
        str(history),
        "--every",
        "1",
        *extra,
    ]


@pytest.fixture
def slow_server(database_url: str, big: Tenant) -> Iterator[tuple[LiveServer, SlowBody]]:
    wrapped: list[SlowBody] = []

    def wrap(app: Any) -> SlowBody:
        wrapped.append(SlowBody(app))
        return wrapped[0]

    server = LiveServer(make_settings(database_url), wrap=wrap).start()
    yield server, wrapped[0]
    server.stop()


def test_ctrl_c_stops_a_poll_mid_download(
    slow_server: tuple[LiveServer, SlowBody], big: Tenant, tmp_path: Path
) -> None:
    server, slow = slow_server
    history = tmp_path / "history.db"
    process = subprocess.Popen(
        watch_command(server, big, history),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert slow.started.wait(60), "the watcher's first poll never started downloading"
        time.sleep(1)  # a few chunks in: mid-download
        assert process.poll() is None
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # The download alone takes about 20 s (41 chunks, 0.5 s apart): a stop that waited for the
    # poll would take that long. Ctrl-C must cut it short: well under 10 s even on a busy CI.
    assert took < 10, f"Ctrl-C took {took:.1f} s to stop a poll that downloads for ~20 s"
    assert process.returncode == 128 + signal.SIGINT, err
    assert out == ""
    assert err.strip() == "stopped during a poll: nothing of it was recorded"
    # Nothing of the cut poll was kept: the history has no snapshot yet.
    listed = cli("history", "--history", str(history), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"


def scrape(url: str) -> tuple[int, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    text = httpx.get(url).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return len(text.encode()), values


def test_a_scrape_of_a_big_operation_stays_small(
    database_url: str, big: Tenant, tmp_path: Path
) -> None:
    """Aggregates by default; the per-point series (opt-in, `--metrics-per-point`, covered in
    test_watch.py) would weigh megabytes here."""
    server = LiveServer(make_settings(database_url)).start()
    port = free_port()
    extra = ["--metrics-port", str(port)]
    process = subprocess.Popen(
        watch_command(server, big, tmp_path / "history.db", *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, process, timeout=60)
        url = f"http://127.0.0.1:{port}/metrics"
        ok = ("routing_points_polls_total", (("result", "success"), ("server", "0032")))
        size, values = scrape(url)
        deadline = time.monotonic() + 120
        while values.get(ok, 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
            size, values = scrape(url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()  # not left behind: the failure below says what happened
            _, err = process.communicate()
            err = f"the watcher did not stop within 60 s of SIGTERM: {err}"
        server.stop()
    assert values[ok] >= 1, err
    assert process.returncode == 0, err  # stopped between polls
    assert values[("routing_points_count", (("server", "0032"),))] == BIG
    ivr_on = ("routing_points_flag_on", (("flag", "ivr_active"), ("server", "0032")))
    assert values[ivr_on] == BIG // 2
    assert size < 8_000, f"a scrape of {BIG} points is {size} bytes (at most 8,000)"
    assert not any(name.startswith("routing_point_") for name, _ in values)
