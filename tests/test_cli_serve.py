"""`serve` and `demo` as real processes: the README's first command, black-box."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from routing_points.cli import serve as serve_cli
from routing_points.settings import Settings
from routing_points.store import tenants
from routing_points.store.engine import create_sync_engine
from tests.support.processes import ServerProcess, cli
from tests.support.services import free_port
from tests.support.wire import ENDPOINT

pytestmark = [pytest.mark.slow, pytest.mark.dated]


def start_demo(cwd: Path) -> tuple[ServerProcess, str, str]:
    demo = ServerProcess("demo", port=free_port(), cwd=cwd)
    lines = [demo.stdout.readline() for _ in range(4)]
    token = next(line.split(": ", 1)[1].strip() for line in lines if line.startswith("token: "))
    curl = lines[3].strip()
    demo.wait_ready()
    return demo, token, curl


def test_demo_serves_a_fresh_database_and_prints_a_working_curl(tmp_path: Path) -> None:
    demo, token, curl = start_demo(tmp_path)
    try:
        assert curl.startswith("curl -s -H 'wolkvox-token: ")
        assert f"http://127.0.0.1:{demo.port}{ENDPOINT}?api=routing_points" in curl
        response = httpx.get(
            f"{demo.url}{ENDPOINT}?api=routing_points", headers={"wolkvox-token": token}
        )
        body = response.json()
        assert body["code"] == 200
        assert body["msg"] == "25 records were found"
        flags = {(r["ivr_active"], r["chat_active"]) for r in body["data"]}
        assert len(flags) > 1
        assert any(r["last_use"] == "" for r in body["data"])
        assert any(r["last_use"] != "" for r in body["data"])
    finally:
        assert demo.stop()
    # A second demo replaces the first: the old token is gone with it.
    again, new_token, _ = start_demo(tmp_path)
    try:
        old = httpx.get(
            f"{again.url}{ENDPOINT}?api=routing_points", headers={"wolkvox-token": token}
        )
        new = httpx.get(
            f"{again.url}{ENDPOINT}?api=routing_points", headers={"wolkvox-token": new_token}
        )
        assert old.status_code == 403
        assert new.status_code == 200
    finally:
        again.stop()


def test_demo_never_replaces_a_real_database(tmp_path: Path) -> None:
    real = tmp_path / "routing-points-demo.db"
    engine = create_sync_engine(f"sqlite:///{real}")
    from routing_points.store import migrate

    migrate.upgrade(engine)
    tenants.add_operation(engine, "0032", "Real customer", 1, "UTC")
    engine.dispose()
    result = cli("demo", "--port", str(free_port()), cwd=tmp_path, timeout=30)
    assert result.returncode != 0
    assert "is not a demo database" in result.stderr
    engine = create_sync_engine(f"sqlite:///{real}")
    assert [op.name for op in tenants.list_operations(engine)] == ["Real customer"]
    engine.dispose()


def test_serve_a_database_set_up_with_the_cli(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'prod.db'}"
    created = cli("migrate", "--database", database)
    assert (created.returncode, created.stdout) == (
        0,
        f"created {database} with the current schema\n",
    )
    again = cli("migrate", "--database", database)
    assert again.stdout == "the database schema is up to date\n"
    assert (
        cli(
            "operations", "add", "0032", "--name", "Acme", "--licenses", "2", "--database", database
        ).returncode
        == 0
    )
    secret = cli("tokens", "add", "0032", "--database", database).stdout.splitlines()[-1]
    server = ServerProcess("serve", "--database", database, port=free_port()).wait_ready()
    try:
        info = httpx.get(
            f"{server.url}{ENDPOINT}?api=token_info",
            headers={"wolkvox-token": secret, "wolkvox_server": "0032"},
        )
        assert info.json()["data"][0]["token_limit"] == "2000"
        # One process per SQLite file: a second server on it is refused with one line.
        second = cli("serve", "--database", database, "--port", str(free_port()), timeout=30)
        assert second.returncode != 0
        assert "another server is already using" in second.stderr
    finally:
        assert server.stop()


def test_a_demo_interrupted_while_built_leaves_nothing_half_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C halfway used to leave a file that was neither a store nor a demo, which every
    later `demo` refused; the demo is now built aside and moved into place whole."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'routing-points-demo.db'}")

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(serve_cli.tenants, "add_token", interrupted)
        with pytest.raises(KeyboardInterrupt):
            serve_cli.create_demo_database(settings)
    assert list(tmp_path.iterdir()) == []
    # A file left that way by an older version holds no table: replaced, not refused.
    sqlite3.connect(settings.sqlite_path).execute("PRAGMA user_version = 1").connection.commit()
    assert serve_cli.create_demo_database(settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routing-points-demo.db"]
