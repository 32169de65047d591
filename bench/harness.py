"""What every benchmark case uses: processes it starts, wrk loads, and CPU accounting.

CPU per request is counted over every process that serves the request (our workers, the
PostgreSQL backends of the benchmark's own database, the benchmark's own redis-server), so a
neighbour on the shared 2 cores disturbs it far less than it disturbs requests per second.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
PYTHON = sys.executable
ENDPOINT = "/api/v2/information.php?api=routing_points"
UVICORN = [
    "-m",
    "uvicorn",
    "--host",
    "127.0.0.1",
    "--workers",
    "1",
    "--no-access-log",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
]
QUIET = {"ROUTING_POINTS_ACCESS_LOG": "false", "ROUTING_POINTS_LOG_LEVEL": "WARNING"}


@dataclass
class Load:
    """One wrk run, with the CPU its serving processes spent."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    requests: int
    cpu_us_per_request: float = float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # a loaded machine starts slowly; CI shares it too
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{child.args} did not start; see {log}")
        time.sleep(0.05)


@contextlib.contextmanager
def process(
    args: list[str], port: int, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    log_path = WORK / f"server-{port}.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(port, child, log_path)
            yield child
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def serve_ours(
    port: int, database: str, extra: list[str] | None = None, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    command = [PYTHON, "-m", "routing_points", "serve", "--port", str(port)]
    return process(
        [*command, "--database", database, *(extra or [])], port, {**QUIET, **(env or {})}
    )


def serve_app(port: int, app: str, env: dict[str, str]) -> contextlib.AbstractContextManager[Any]:
    """A reference ASGI app of bench/apps on uvicorn, configured like ours."""
    return process([PYTHON, *UVICORN, "--port", str(port), app], port, env)


@contextlib.contextmanager
def own_redis() -> Iterator[tuple[str, int]]:
    """A redis-server of the benchmark's own, so its CPU is ours alone to count."""
    port = free_port()
    directory = WORK / f"redis-{port}"
    directory.mkdir()
    command = [
        shutil.which("redis-server") or "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]
    with process(command, port) as child:
        yield f"redis://127.0.0.1:{port}/0", child.pid


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    script: Path | None = None,
    headers: dict[str, str] | None = None,
) -> Load:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["--timeout", "30s"]
    if script is not None:
        command += ["-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return parse_wrk(output)


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if found is None:
        raise RuntimeError(f"unexpected wrk latency {text!r}")
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> Load:
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return Load(
        requests_per_s=float(rate.group(1)),
        # No latency figures when no request completed (reported as 0 requests below).
        p50_ms=_ms(percentiles["50"]) if "50" in percentiles else float("nan"),
        p99_ms=_ms(percentiles["99"]) if "99" in percentiles else float("nan"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(map(int, errors.groups())) if errors else 0,
        requests=int(requests.group(1)),
    )


def token_script(tokens: list[str], name: str) -> Path:
    """A wrk script that rotates through many tokens, so none has 2 requests in flight."""
    path = WORK / f"tokens-{name}-{secrets.token_hex(2)}.lua"
    listed = ",\n".join(f'  "{token}"' for token in tokens)
    path.write_text(
        f"tokens = {{\n{listed}\n}}\ncounter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        '  wrk.headers["wolkvox-token"] = tokens[(counter % #tokens) + 1]\n'
        "  return wrk.format()\n"
        "end\n"
    )
    return path


ProcessSet = Callable[[], list[psutil.Process]]


def tree(pid: int) -> ProcessSet:
    """A process and all its descendants (uvicorn's workers), as they are when asked."""

    def processes() -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    return processes


def postgres_backends(database: str) -> ProcessSet:
    """The PostgreSQL backends connected to one database (their title names it)."""

    def processes() -> list[psutil.Process]:
        found = []
        for candidate in psutil.process_iter(["name", "cmdline"]):
            title = " ".join(candidate.info["cmdline"] or [])
            if title.startswith("postgres:") and f" {database} " in f"{title} ":
                found.append(candidate)
        return found

    return processes


def cpu_seconds(sets: list[ProcessSet]) -> dict[int, float]:
    spent: dict[int, float] = {}
    for processes in sets:
        for proc in processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                spent[proc.pid] = times.user + times.system
    return spent


def thread_cpu_seconds(sets: list[ProcessSet]) -> dict[tuple[int, str], float]:
    """CPU seconds of every live thread, from /proc/PID/task/TID/schedstat: nanoseconds, where
    the user+system times are counted in 10 ms ticks. A thread that ends is lost, so this is
    for short measures of long-lived servers (their loop, writer and render threads)."""
    spent: dict[tuple[int, str], float] = {}
    for processes in sets:
        for proc in processes():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for task in os.listdir(f"/proc/{proc.pid}/task"):
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        stat = Path(f"/proc/{proc.pid}/task/{task}/schedstat").read_text()
                        spent[(proc.pid, task)] = int(stat.split()[0]) / 1e9
    return spent


@contextlib.contextmanager
def cpu_meter(sets: list[ProcessSet], *, precise: bool = False) -> Iterator[list[float]]:
    """Yields a list that holds, once the block ends, the CPU seconds the sets spent in it.

    A process that started during the block counts whole; one that ended is lost (rare: the
    servers and their pooled backends live through every load). `precise` reads each
    thread's nanoseconds instead of the processes' ticks, for blocks of a few milliseconds."""
    read: Callable[[list[ProcessSet]], dict[Any, float]] = (
        thread_cpu_seconds if precise else cpu_seconds
    )
    spent: list[float] = []
    before = read(sets)
    yield spent
    after = read(sets)
    spent.append(sum(value - before.get(key, 0.0) for key, value in after.items()))
