"""`watch` stops on any number of signals, however they land: its stop request takes no lock.

A `threading.Event` did: a signal handled while the main thread held its lock (inside
`wait()`, or inside the first handler's `set()` when Ctrl-C or SIGTERM came twice) blocked
the watcher for good.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.support.processes import COMMAND, wait_for_port
from tests.support.seed import add_tenant, point
from tests.support.servers import LiveServer, make_settings
from tests.support.services import free_port

# Every line run inside the stop request's wait() and set(), and inside what they call, is
# followed by a signal whose handler sets the request again: the handler then runs at each
# of those lines, as a real signal can. Run in a child process, where a deadlock is a timeout.
EVERY_LINE_INTERRUPTED = textwrap.dedent(
    """
    import os, signal, sys
    from routing_points.watch.watcher import StopRequest

    stop = StopRequest()
    handled = []
    signal.signal(signal.SIGUSR1, lambda *_: (handled.append(1), stop.set()))
    inside = False

    def tracer(frame, event, arg):
        if inside and event == "line":
            os.kill(os.getpid(), signal.SIGUSR1)
        return tracer

    sys.settrace(tracer)
    inside = True
    returned = stop.wait(30)
    stop.set()
    inside = False
    sys.settrace(None)
    stop.close()
    print(returned, len(handled) > 1)
    """
)


def test_a_handler_may_set_the_stop_request_at_any_line_of_its_wait_and_set() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EVERY_LINE_INTERRUPTED],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def polls(port: int) -> str:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return "".join(line for line in metrics.splitlines() if line.startswith("routing_points_polls"))


@pytest.mark.slow
def test_a_burst_of_sigterms_stops_the_watcher(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """Ctrl-C twice, or a supervisor's second SIGTERM: signals arriving while the first is
    handled. Before the fix, a burst like this one left the watcher blocked about one time
    in four."""
    tenant = add_tenant(engine, "0032", [point(101), point(102)], licenses=1000)
    server = LiveServer(make_settings(database_url)).start()
    history = tmp_path / "history.db"
    port = free_port()
    process = subprocess.Popen(
        [*COMMAND, "watch", "--server", "0032", "--token", tenant.token, "--base-url",
         server.url, "--history", str(history), "--every", "1", "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
        deadline = time.monotonic() + 60
        # Once the first poll is counted, the watcher waits for the next one (300 s away).
        while 'result="success"' not in polls(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        burst_ends = time.monotonic() + 0.2
        while time.monotonic() < burst_ends and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            gap_ends = time.perf_counter() + random.uniform(0, 50e-6)
            while time.perf_counter() < gap_ends:
                pass  # microseconds apart: a sleep would space them too far
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"the watcher did not stop within 30 s of a burst of SIGTERMs: {err}")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        server.stop()
    # 0: stopped between polls; -SIGTERM: a signal of the burst came after the interpreter
    # had given the default handler back, on its way out.
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
