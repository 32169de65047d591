"""Running `routing-points` as a real process, the way an operator does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

COMMAND = [sys.executable, "-m", "routing_points"]


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class ServerProcess:
    """`routing-points serve` (or `demo`, or another `command`: uvicorn) in a child process;
    stopped with SIGTERM."""

    def __init__(
        self,
        *args: str,
        port: int,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        command: list[str] = COMMAND,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # The log goes to a file: a pipe nobody reads would fill and stall the server.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop/kill)
        self.logged = ""  # its stderr, once stopped
        self.process = subprocess.Popen(
            [*command, *args, "--port", str(port)],
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    @property
    def stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def wait_ready(self) -> ServerProcess:
        """Wait until it listens; a server that never does is killed, its pipes closed (so
        no unclosed-file warning lands on a later test)."""
        try:
            wait_for_port(self.port, self.process)
        except RuntimeError:
            self.kill()
            raise
        return self

    def stop(self) -> bool:
        """SIGTERM, then whether the server shut down gracefully.

        uvicorn re-raises the signal once it has shut down, so the exit status is -SIGTERM
        either way; the log tells a graceful shutdown from a crash.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.seek(0)
        log = self.logged = self.log.read()
        self._close_streams()
        return self.process.returncode in (0, -signal.SIGTERM) and (
            "Application shutdown complete" in log
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._close_streams()

    def _close_streams(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()
