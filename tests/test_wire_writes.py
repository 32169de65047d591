"""What an answer costs on the wire: a small answer is one write to its socket, head and
body together (uvicorn writes them apart: two send() calls and two TCP segments). Watched
with strace on a real server process."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from routing_points.store import migrate
from routing_points.store.engine import create_sync_engine
from tests.support.processes import ServerProcess
from tests.support.seed import add_tenant, point
from tests.support.servers import headers
from tests.support.services import free_port, service_missing
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.slow

# A write to a socket (fd 3 and up; 1 and 2 are the logs), as strace -f prints it.
SOCKET_WRITE = re.compile(
    r'^\d+ +(?:write|writev|sendto|sendmsg)\((\d+), \[?\{?(?:iov_base=)?"(.*)'
)


def socket_writes(trace: Path) -> list[str]:
    """The start of what each write to a socket carried (not the event loop's wake-ups: an
    8-byte counter written to an eventfd, which strace prints escaped)."""
    writes = []
    for line in trace.read_text().splitlines():
        found = SOCKET_WRITE.match(line)
        if found and int(found.group(1)) > 2 and not found.group(2).startswith("\\"):
            writes.append(found.group(2))
    return writes


def test_a_small_answer_is_one_write(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        service_missing("strace", FileNotFoundError("strace (apt-get install strace)"))
    url = f"sqlite:///{tmp_path / 'rp.db'}"
    engine = create_sync_engine(url)
    migrate.upgrade(engine)
    tenant = add_tenant(engine, "0032", [point(101), point(102)])
    engine.dispose()
    server = ServerProcess("serve", "--database", url, port=free_port(), cwd=tmp_path)
    server.wait_ready()
    trace = tmp_path / "trace.txt"
    calls = "trace=write,writev,sendto,sendmsg"
    pid = str(server.process.pid)
    tracer = subprocess.Popen(
        [strace, "-f", "-qq", "-s", "64", "-e", calls, "-o", str(trace), "-p", pid]
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            # Until strace is attached: a probe whose answer shows up in the trace.
            deadline = time.monotonic() + 30
            while not any("HTTP/1.1 200" in w for w in socket_writes(trace)):
                assert time.monotonic() < deadline, "strace never saw the server write"
                assert http.get("/healthz").status_code == 200
                time.sleep(0.2)
            before = len(socket_writes(trace))
            answers = [http.get(f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token))]
            answers.append(http.get(f"{ENDPOINT}?api=nope", headers=headers(tenant.token)))
            answers.append(http.get("/healthz"))
            time.sleep(0.5)  # strace writes its lines after the calls return
    finally:
        tracer.terminate()
        tracer.wait(timeout=10)
        assert server.stop()
    assert [a.status_code for a in answers] == [200, 400, 200]
    writes = socket_writes(trace)[before:]
    # Three answers, three writes, each starting with its status line: none sent apart.
    assert [w[: len("HTTP/1.1 200")] for w in writes] == [
        "HTTP/1.1 200",
        "HTTP/1.1 400",
        "HTTP/1.1 200",
    ]
