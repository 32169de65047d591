"""`pip install routing-points` (no extra) is the SDK and the client commands, nothing of the
server; server commands there answer one line naming the extra. Checked in a real venv with
the wheel of this checkout, created once per run."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SERVER_ONLY = ("starlette", "uvicorn", "asyncpg", "psycopg", "redis", "pydantic")


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This venv's pip, acting on `venv` (`pip --python`): the plain venv needs no pip of its
    own, and making one (ensurepip) was a third of the fixture's time."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="session")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install <this checkout>`: the plain install, no extra.

    Under pytest-xdist every worker has a session of its own: the first to get here builds
    the venv beside their temporary folders, under a lock, and the others reuse it.
    """
    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent
    venv = shared / "plain-venv"
    with (shared / "plain-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "installed").exists():
            made = [sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)]
            subprocess.run(made, check=True, timeout=300)
            installed = pip(venv, "install", "--quiet", str(ROOT))
            assert installed.returncode == 0, installed.stderr
            (venv / "installed").touch()
    return venv


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "routing-points"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def test_the_plain_install_has_no_server_dependency(plain_venv: Path) -> None:
    listed = pip(plain_venv, "list", "--format", "freeze")
    assert listed.returncode == 0, listed.stderr
    names = {line.split("==")[0].lower().replace("_", "-") for line in listed.stdout.split()}
    assert "routing-points" in names
    assert not names & {"starlette", "uvicorn", "asyncpg", "psycopg", "redis"}


def test_client_commands_work_without_the_server_extra(plain_venv: Path, tmp_path: Path) -> None:
    for command in ("get", "token-info", "watch", "history"):
        helped = run(plain_venv, command, "--help", cwd=tmp_path)
        assert helped.returncode == 0, helped.stderr
        assert "Usage:" in helped.stdout
    # watch opens its history (SQLAlchemy), then finds nothing listening: exit 5 (network).
    unreachable = ("--base-url", "http://127.0.0.1:9", "--retries", "0", "--token", "t")
    watched = run(plain_venv, "watch", "--server", "0032", *unreachable, "--once", cwd=tmp_path)
    assert watched.returncode == 5, watched.stderr
    assert "Traceback" not in watched.stderr
    listing = run(plain_venv, "--help", cwd=tmp_path)
    assert listing.returncode == 0
    assert "needs the server extra" in listing.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "8000"),
        ("demo",),
        ("migrate", "--database", "sqlite:///x.db"),
        ("operations", "list"),
        ("tokens", "add", "0032"),
        ("points", "--help"),
    ],
)
def test_server_commands_name_the_extra(
    plain_venv: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run(plain_venv, *args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'routing-points[server]'" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_the_sdk_imports_nothing_of_the_server() -> None:
    """Also where the server is installed (this venv): the SDK and the CLI's client side
    never import it."""
    probe = (
        "import sys, routing_points.client, routing_points.cli; "
        f"print(sorted(m for m in {SERVER_ONLY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
