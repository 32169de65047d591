"""The README's examples, run as written against a fresh demo, so the README cannot drift.

The blocks marked `<!-- runnable against the demo -->` are run line by line with bash, in
the demo's folder, with only the demo's port and this checkout's `.venv/bin/` put in. The
demo's own banner commands are run the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess
from tests.support.services import free_port

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- runnable against the demo -->"
BANNER_LINES = 8
PROGRAM = str(Path(sys.executable).parent / "routing-points")


def runnable_commands(text: str) -> list[str]:
    blocks = re.findall(re.escape(MARKER) + r"\n```sh\n(.*?)```", text, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def run(command: str, cwd: Path, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env={**os.environ, "ROUTING_POINTS_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readme_has_runnable_examples() -> None:
    commands = runnable_commands(README.read_text())
    assert len(commands) >= 10
    assert all(c.startswith((".venv/bin/routing-points ", "curl ")) for c in commands)


def test_the_readme_examples_and_the_demo_banner_work_as_written(tmp_path: Path) -> None:
    demo = ServerProcess("demo", port=free_port(), cwd=tmp_path)
    banner = [demo.stdout.readline().rstrip("\n") for _ in range(BANNER_LINES)]
    demo.wait_ready()
    try:
        token = banner[1].removeprefix("token: ")
        assert banner[0].startswith("demo operation 0032 with 25 routing points")
        tried = [line.strip() for line in banner[3:]]
        assert f"export ROUTING_POINTS_TOKEN={token}" in tried
        admin = " points list 0032 --database sqlite:///routing-points-demo.db"
        assert any(line.endswith(admin) for line in tried)
        for command in tried:
            result = run(command, tmp_path, token)
            assert result.returncode == 0, (command, result.stderr)
            if command.startswith("curl "):
                assert '"code":200' in result.stdout
        for line in runnable_commands(README.read_text()):
            command = line.replace("http://127.0.0.1:8000", demo.url).replace(
                ".venv/bin/routing-points", PROGRAM
            )
            result = run(command, tmp_path, token)
            assert result.returncode == 0, (line, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            if line.startswith("curl "):
                assert '"code":200' in result.stdout
    finally:
        assert demo.stop()
