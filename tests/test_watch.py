"""`watch` and `history` against a real server, changed through the admin CLI between polls."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from routing_points.client.models import RoutingPoint
from routing_points.store import tenants
from routing_points.store.schema import usage_counters
from routing_points.watch.diff import changes_between, newly_stale
from routing_points.watch.watcher import IntervalPolicy
from tests.support.processes import COMMAND, ServerProcess, cli, wait_for_port
from tests.support.seed import add_tenant, point
from tests.support.services import free_port, until_charges_counted

pytestmark = [pytest.mark.slow, pytest.mark.dated]

# Dates relative to today (UTC, the operation's zone and the watcher's --timezone here), so the
# suite means the same on any day: used two days ago, used again yesterday.
LAST_USE = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
USED_AGAIN = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Watched:
    database: str
    server: ServerProcess
    token: str
    admin_token: str
    history: Path

    def watch(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return cli(*self.command(*extra)[len(COMMAND) :])

    def command(self, *extra: str) -> list[str]:
        return [
            *COMMAND,
            "watch",
            "--server",
            "0032",
            "--token",
            self.token,
            "--base-url",
            self.server.url,
            "--history",
            str(self.history),
            "--every",
            "1",
            "--timezone",
            "UTC",
            *extra,
        ]


@pytest.fixture
def watched(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[Watched]:
    tenant = add_tenant(
        engine,
        "0032",
        [
            point(101, "Sales line", last_use=LAST_USE),
            point(102, "Support chat"),
            point(1000, "Night shift"),
        ],
        licenses=1,
    )
    admin_token = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    server = ServerProcess(
        "serve",
        "--database",
        database_url,
        port=free_port(),
        env={
            "ROUTING_POINTS_POLL_INTERVAL_S": "1",
            "ROUTING_POINTS_DAILY_CALLS_PER_LICENSE": "1000000",
        },
    ).wait_ready()
    yield Watched(database_url, server, tenant.token, admin_token, tmp_path / "history.db")
    server.stop()


def change_everything(watched: Watched) -> None:
    """A flag off, a rename, an addition, a removal and a use, through the admin tools."""
    db = ["--database", watched.database]
    assert cli("points", "set", "0032", "101", "--ivr", "no", *db).returncode == 0
    assert cli("points", "set", "0032", "102", "--name", "Support", *db).returncode == 0
    new = watched.history.parent / "new.json"
    new.write_text(json.dumps([{"rp_id": "103", "rp_name": "Claims"}]))
    assert cli("points", "import", "0032", str(new), *db).returncode == 0
    with httpx.Client(
        base_url=watched.server.url, headers={"wolkvox-token": watched.admin_token}
    ) as http:
        assert http.delete("/api/v2/admin/routing_points/1000").status_code == 200
        used = http.post(
            "/api/v2/admin/usage_events",
            json=[{"rp_id": "101", "channel": "ivr", "at": USED_AGAIN}],
        )
        assert used.status_code == 200


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_events_in_order_and_none_repeated_after_a_restart(watched: Watched) -> None:
    baseline = watched.watch("--once")
    assert baseline.returncode == 0, baseline.stderr
    assert baseline.stdout == ""
    change_everything(watched)
    changed = watched.watch("--once")
    assert changed.returncode == 1, changed.stderr
    events = lines(changed.stdout)
    assert [(e["kind"], e["rp_id"], e["field"]) for e in events] == [
        ("flag_off", 101, "ivr_active"),
        ("last_use_advanced", 101, "last_use"),
        ("renamed", 102, "rp_name"),
        ("added", 103, None),
        ("removed", 1000, None),
    ]
    assert events[1]["old"] == LAST_USE
    assert events[1]["new"] == USED_AGAIN
    assert events[2]["old"] == "Support chat"
    assert events[2]["new"] == "Support"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    again = watched.watch("--once")  # a new process: the restart
    assert again.returncode == 0
    assert again.stdout == ""
    timeline = cli("history", "--history", str(watched.history), "--format", "json")
    assert [e["id"] for e in json.loads(timeline.stdout)] == [e["id"] for e in events]
    table = cli("history", "--history", str(watched.history), "--rp", "101", env={"COLUMNS": "200"})
    assert "flag_off" in table.stdout
    assert "ivr_active          █▁" in table.stdout


def consumptions(database: str) -> int:
    from routing_points.store.engine import create_sync_engine

    until_charges_counted(database)
    engine = create_sync_engine(database)
    with engine.connect() as conn:
        total = conn.execute(select(func.coalesce(func.sum(usage_counters.c.count), 0)))
        count = int(total.scalar_one())
    engine.dispose()
    return count


def test_an_unchanged_poll_costs_nothing(watched: Watched) -> None:
    assert watched.watch("--once").returncode == 0
    spent = consumptions(watched.database)
    for _ in range(3):
        assert watched.watch("--once").returncode == 0
    assert consumptions(watched.database) == spent
    assert (
        cli(
            "points", "set", "0032", "102", "--crm", "yes", "--database", watched.database
        ).returncode
        == 0
    )
    assert watched.watch("--once").returncode == 1
    assert consumptions(watched.database) == spent + 1


class Receiver:
    """A webhook that fails its first `failures` deliveries, then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.attempts += 1
                ok = receiver.attempts > receiver.failures
                if ok:
                    receiver.received.extend(body["events"])
                self.send_response(200 if ok else 503)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_webhook_down_then_back_loses_nothing(watched: Watched) -> None:
    receiver = Receiver(failures=4)
    try:
        assert watched.watch("--once", "--webhook", receiver.url).returncode == 0
        change_everything(watched)
        first = watched.watch("--once", "--webhook", receiver.url)
        assert first.returncode == 1
        assert receiver.received == []  # three attempts, all refused: the events wait
        assert first.stderr.count("webhook delivery failed") == 3
        assert (
            cli(
                "points", "set", "0032", "103", "--chat", "yes", "--database", watched.database
            ).returncode
            == 0
        )
        second = watched.watch("--once", "--webhook", receiver.url)
        assert second.returncode == 1
    finally:
        receiver.close()
    ids = [event["id"] for event in receiver.received]
    assert len(ids) == 6
    assert ids == sorted(set(ids))
    assert [e["kind"] for e in receiver.received][-1] == "flag_on"


def metric_values(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(httpx.get(url).text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_and_a_clean_stop(watched: Watched) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            *COMMAND,
            "watch",
            "--server",
            "0032",
            "--token",
            watched.token,
            "--base-url",
            watched.server.url,
            "--history",
            str(watched.history),
            "--every",
            "1",
            "--metrics-port",
            str(port),
            "--metrics-per-point",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/metrics"
        ok = ("routing_points_polls_total", (("result", "success"), ("server", "0032")))
        values: dict[Any, float] = {}
        for _ in range(100):
            values = metric_values(url)
            if values.get(ok, 0) >= 1:
                break
            time.sleep(0.05)
        ivr = ("routing_point_flag", (("flag", "ivr_active"), ("rp_id", "101"), ("server", "0032")))
        assert values[ivr] == 1
        assert values[("routing_points_up", (("server", "0032"),))] == 1
        assert values[("routing_points_budget_remaining", (("server", "0032"),))] > 0
        assert (
            values[("routing_points_last_success_timestamp_seconds", (("server", "0032"),))]
            > time.time() - 60
        )
        idle = "routing_point_seconds_since_last_use"
        assert values[(idle, (("rp_id", "101"), ("server", "0032")))] > 0
        assert math.isnan(values[(idle, (("rp_id", "102"), ("server", "0032")))])
        assert (
            cli(
                "points", "set", "0032", "101", "--ivr", "no", "--database", watched.database
            ).returncode
            == 0
        )
        for _ in range(100):
            if metric_values(url)[ivr] == 0:
                break
            time.sleep(0.05)
        assert metric_values(url)[ivr] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert [e["kind"] for e in lines(out)] == ["flag_off"]


def test_the_interval_adjustment_is_shown(watched: Watched, tmp_path: Path) -> None:
    log = tmp_path / "watch.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*watched.command("--budget-share", "0.001")], stdout=subprocess.PIPE, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 60
        # 1,000 polls a day at most (0.1% of 1,000,000): one every 86.4 s.
        while "daily budget of 1000000" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert "polling every 87 s instead of 1 s" in log.read_text()
    assert "within 0.1% of a daily budget of 1000000" in log.read_text()
    assert process.returncode == 0


def test_once_is_silent_when_nothing_changed(watched: Watched) -> None:
    """What cron needs: the first poll is a silent baseline, an unchanged operation prints
    nothing, and no log line (no interval warning, no HTTP request lines) reaches stderr."""
    for _ in range(2):
        result = watched.watch("--once", "--budget-share", "0.001")
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    verbose = watched.watch("--once", "-v")
    assert verbose.returncode == 0
    assert "polled 0032: unchanged (304), 3 points, 0 events" in verbose.stderr
    assert "HTTP Request" not in verbose.stderr
    debug = watched.watch("--once", "-vv")
    assert debug.returncode == 0
    assert "HTTP Request: GET" in debug.stderr


def test_interval_policy() -> None:
    policy = IntervalPolicy(60, 0.10)
    assert policy.interval(300, 1_000_000) == (300, "the service advises 300 s (X-Poll-Interval)")
    interval, why = policy.interval(None, None)
    assert interval == 864  # 100 polls a day at most, of the smallest budget (1,000)
    assert "10% of a daily budget of 1000" in why
    assert policy.interval(30, 1_000_000) == (60, "")


def rp(
    rp_id: int, name: str = "P", last_use: datetime | None = None, **flags: bool
) -> RoutingPoint:
    return RoutingPoint(
        rp_id,
        name,
        flags.get("ivr", False),
        flags.get("chat", False),
        flags.get("interaction", False),
        flags.get("crm", False),
        last_use,
    )


def test_changes_between_snapshots() -> None:
    before = {1: rp(1, "A", ivr=True), 2: rp(2, "B"), 3: rp(3, "C", datetime(2026, 11, 1))}
    after = {1: rp(1, "A2", chat=True), 3: rp(3, "C", datetime(2026, 10, 1)), 4: rp(4, "D")}
    found = [(c.kind, c.rp_id, c.field) for c in changes_between(before, after)]
    assert found == [
        ("renamed", 1, "rp_name"),
        ("flag_off", 1, "ivr_active"),
        ("flag_on", 1, "chat_active"),
        ("removed", 2, None),
        ("added", 4, None),
    ]  # 3's last_use moved back: not an advance


def test_stale_points_are_reported_once() -> None:
    now = datetime(2026, 11, 27, 12, 0)
    points = [
        rp(1, last_use=now - timedelta(days=8)),
        rp(2, last_use=now - timedelta(days=1)),
        rp(3),
    ]
    found, stale = newly_stale(points, set(), now, timedelta(days=7))
    assert [(c.kind, c.rp_id) for c in found] == [("stale", 1)]
    assert stale == {1}
    again, stale = newly_stale(points, stale, now, timedelta(days=7))
    assert again == []
    assert stale == {1}
