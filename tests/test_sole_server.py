"""One server process per SQLite file, however the app is started: the store holds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ServerProcess
from tests.support.services import free_port

UVICORN = [sys.executable, "-m", "uvicorn"]
FACTORY = ("--factory", "routing_points.server.app:create_app")


def test_a_second_bare_uvicorn_app_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    env = {"ROUTING_POINTS_DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}"}
    first = ServerProcess(*FACTORY, port=free_port(), env=env, command=UVICORN).wait_ready()
    try:
        second = subprocess.run(
            [*UVICORN, *FACTORY, "--port", str(free_port())],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert f"another server is already using {tmp_path / 'one.db'}" in second.stderr
    finally:
        assert first.stop()
    # Released when the first one stopped: the file can be served again.
    again = ServerProcess(*FACTORY, port=free_port(), env=env, command=UVICORN).wait_ready()
    assert again.stop()
