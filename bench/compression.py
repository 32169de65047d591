"""The 60,000-point answer with and without gzip, on a real `routing-points serve`.

    .venv/bin/python -m bench.compression

Seeds a temporary SQLite store with the benchmarks' 60,000 points, serves it, and prints
the bytes on the wire and the time of: the identity answer, the first gzip answer (which
compresses the page) and the next one (served from the cached gzip body), plus the cost of
gzip levels 1, 6 and 9 on the body alone.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.run import seed

ENDPOINT = "/api/v2/information.php?api=routing_points"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str, token: str, encoding: str) -> tuple[int, float, bytes]:
    headers = {"wolkvox-token": token, "accept-encoding": encoding}
    with httpx.Client(timeout=120) as http:
        started = time.perf_counter()
        with http.stream("GET", url, headers=headers) as response:
            wire = b"".join(response.iter_raw())
        elapsed = time.perf_counter() - started
    return len(wire), elapsed * 1000, wire


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = f"sqlite:///{Path(folder) / 'bench.db'}"
        fixture = seed(database, 1)
        port = free_port()
        command = [sys.executable, "-m", "routing_points", "serve", "--database", database]
        server = subprocess.Popen(
            [*command, "--port", str(port)],
            env={**os.environ, "ROUTING_POINTS_ACCESS_LOG": "false"},
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port}{ENDPOINT}"
            fetch(url, fixture.big_token, "identity")  # renders and caches the page
            plain_bytes, plain_ms, body = fetch(url, fixture.big_token, "identity")
            first_bytes, first_ms, _ = fetch(url, fixture.big_token, "gzip")
            cached_bytes, cached_ms, _ = fetch(url, fixture.big_token, "gzip")
        finally:
            server.terminate()
            server.wait()
    print(f"identity (cached page):      {plain_bytes:>11,} bytes {plain_ms:8.1f} ms")
    print(f"gzip, first (compresses):    {first_bytes:>11,} bytes {first_ms:8.1f} ms")
    print(f"gzip, next (cached gzip):    {cached_bytes:>11,} bytes {cached_ms:8.1f} ms")
    for level in (1, 6, 9):
        started = time.perf_counter()
        size = len(gzip.compress(body, level, mtime=0))
        elapsed = (time.perf_counter() - started) * 1000
        print(f"gzip level {level} of the body:     {size:>11,} bytes {elapsed:8.1f} ms")


if __name__ == "__main__":
    main()
