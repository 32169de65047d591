"""`routing-points mirror` as an operator runs it, and the mirror's schedule arithmetic."""

from __future__ import annotations

from pathlib import Path

import httpx

from routing_points.mirror.schedule import BudgetShare, Schedule
from routing_points.store import points as point_store
from routing_points.store.engine import create_sync_engine
from tests.support.mirroring import (
    UPSTREAM,
    Upstream,
    data,
    upstream_data,
    wait_until,
)
from tests.support.processes import ServerProcess, cli
from tests.support.services import free_port, port_in_use
from tests.support.wire import ENDPOINT


def test_mirror_once_records_a_snapshot_for_the_sandbox(upstream: Upstream, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'recording.db'}"
    token_file = tmp_path / "upstream-token"
    token_file.write_text(upstream.tenant.token + "\n")
    args = ["mirror", "--once", "--upstream-server", UPSTREAM, "--upstream-url", upstream.url]
    done = cli(*args, "--upstream-token-file", str(token_file), "--database", database)
    assert done.returncode == 0, done.stderr
    assert "recorded operation 0032" in done.stdout
    assert "3 routing points (3 added, 0 changed, 0 deleted, 1 page)" in done.stdout
    engine = create_sync_engine(database)
    try:
        _, rows = point_store.list_points(engine, UPSTREAM)
        assert [row.rp_id for row in rows] == [101, 102, 1000]
    finally:
        engine.dispose()
    again = cli(
        *args, "--database", database, env={"ROUTING_POINTS_UPSTREAM_TOKEN": upstream.tenant.token}
    )
    assert again.returncode == 0, again.stderr
    assert "unchanged since the last recording (304)" in again.stdout


def test_mirror_refuses_bad_tokens_and_missing_ones_in_one_line(
    upstream: Upstream, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'recording.db'}"
    args = ["mirror", "--once", "--upstream-server", UPSTREAM, "--upstream-url", upstream.url]
    bad = cli(*args, "--database", database, env={"ROUTING_POINTS_UPSTREAM_TOKEN": "wrong"})
    assert bad.returncode == 3
    assert bad.stderr.strip() == (
        "Error: InvalidToken: PLEASE VALIDATE TOKEN "
        "(a token is valid for one operation: check it and the server)"
    )
    # The store it made for that recording is gone again: nothing half-written.
    assert sorted(tmp_path.glob("recording.db*")) == []
    missing = cli(*args, "--database", database, env={"ROUTING_POINTS_UPSTREAM_TOKEN": ""})
    assert missing.returncode == 2  # a usage mistake, as `get` without a token
    assert "no upstream token" in missing.stderr
    assert "Traceback" not in missing.stderr
    on_argv = cli(*args, "--upstream-token", "x")
    assert on_argv.returncode == 2


def test_a_first_start_with_a_wrong_token_is_one_line_and_serves_nothing(
    upstream: Upstream, tmp_path: Path
) -> None:
    """With no copy yet it served an empty operation for ever, logging errors."""
    args = ["mirror", "--upstream-server", UPSTREAM, "--upstream-url", upstream.url]
    folder = tmp_path / "mirror"
    folder.mkdir()
    env = {"ROUTING_POINTS_UPSTREAM_TOKEN": "wrong"}
    refused = cli(
        *args, "--database", "sqlite:///m.db", "--port", str(free_port()), env=env, cwd=folder
    )
    assert refused.returncode == 3
    assert refused.stderr.strip() == (
        "Error: InvalidToken: PLEASE VALIDATE TOKEN "
        "(a token is valid for one operation: check it and the server)"
    )
    # The store it made is gone again; only the lock file every server's start probes stays
    # (removing one is racy: see the README).
    assert [path.name for path in folder.iterdir()] == ["m.db.lock"]


def test_the_mirror_command_serves_local_consumers(upstream: Upstream, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'mirror.db'}"
    assert cli("migrate", "--database", database).returncode == 0
    created = cli(
        "operations", "add", UPSTREAM, "--name", "Mirror", "--licenses", "2", "--database", database
    )
    assert created.returncode == 0, created.stderr
    token = cli("tokens", "add", UPSTREAM, "--database", database).stdout.strip().splitlines()[-1]
    port = free_port()
    process = ServerProcess(
        "mirror",
        "--upstream-server",
        UPSTREAM,
        "--upstream-url",
        upstream.url,
        "--every",
        "1",
        "--database",
        database,
        port=port,
        env={"ROUTING_POINTS_UPSTREAM_TOKEN": upstream.tenant.token},
    ).wait_ready()
    try:
        url = f"{process.url}{ENDPOINT}?api=routing_points"

        def served() -> bool:
            response = httpx.get(url, headers={"wolkvox-token": token})
            return response.status_code == 200 and "x-mirror-synced-at" in response.headers

        wait_until(served, "the mirror to serve its copy")
        assert data(httpx.get(url, headers={"wolkvox-token": token})) == upstream_data(upstream)
    finally:
        assert process.stop()


def test_the_schedule_keeps_within_the_advice_and_the_budget_share() -> None:
    budget = BudgetShare(share=0.5, daily_budget=1000)
    schedule = Schedule(every_s=60, budget=budget, max_backoff_s=3600)
    # 500 requests a day: one every 172.8 s at most.
    assert schedule.interval().seconds == 173
    schedule.advised_s = 300
    assert schedule.interval().seconds == 300
    assert "X-Poll-Interval" in schedule.interval().why
    schedule.requests_per_sync = 3  # continuation pages count
    assert schedule.interval().seconds == 519
    # Failures wait the interval, doubling, up to the cap.
    assert [schedule.retry_s(n) for n in (1, 2, 3, 4, 5)] == [519, 1038, 2076, 3600, 3600]


def test_the_budget_share_is_counted_per_upstream_day() -> None:
    budget = BudgetShare(share=0.01, daily_budget=1000)  # 10 requests a day
    now = 1_000_000.0
    budget.record(9, now, resets_in_s=3600)
    assert budget.wait_s(now) == 0
    budget.record(1, now + 10, resets_in_s=3590)
    assert budget.wait_s(now + 10) == 3590
    # The upstream's day turned: its reset moved a day later, the count starts again.
    budget.record(1, now + 3700, resets_in_s=86_300)
    assert budget.spent == 1
    assert budget.wait_s(now + 3700) == 0


def test_a_serving_mirror_checks_what_serve_checks_before_anything_is_created(
    tmp_path: Path,
) -> None:
    """It migrated, synced, then failed to bind (exit 3, uvicorn's "startup failed", which
    the CLI's codes call an authentication failure) and left its store behind; a file that
    is no database was a traceback; a missing folder was created."""
    (tmp_path / "notes.db").write_text("my notes\n")
    env = {"ROUTING_POINTS_UPSTREAM_TOKEN": "t"}
    args = ["mirror", "--upstream-server", UPSTREAM, "--upstream-url", "http://127.0.0.1:9"]
    with port_in_use() as taken:
        for database, port, line in (
            (
                "mirror.db",
                str(taken),
                f"cannot listen on 127.0.0.1:{taken}: Address already in use",
            ),
            (
                "notes.db",
                str(free_port()),
                "cannot use the database sqlite:///notes.db: file is not",
            ),
            (
                "none/m.db",
                str(free_port()),
                "cannot create the database none/m.db: the folder none",
            ),
        ):
            result = cli(
                *args, "--database", f"sqlite:///{database}", "--port", port, env=env, cwd=tmp_path
            )
            assert result.returncode == 1
            assert result.stderr.startswith(f"Error: {line}"), result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]
