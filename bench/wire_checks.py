"""Which of server/protocol.py's per-connection protections hold under uvicorn and granian.

    python -m bench.wire_checks

Starts ours under both servers with short deadlines (headers 1 s, send 1 s, body 1.5 s;
granian's own `--http1-header-read-timeout 1000`), sends each hostile pattern as exact bytes
and prints what each server did. Not a test: it documents why `serve` stays on uvicorn
(tests/test_hostile.py holds uvicorn to these protections).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import sys
import time
from collections.abc import Callable

from bench.fixture import seed
from bench.granian import serve_granian
from bench.harness import ENDPOINT, QUIET, WORK, free_port, serve_ours

DEADLINES = {
    "ROUTING_POINTS_HEADER_TIMEOUT_S": "1",
    "ROUTING_POINTS_SEND_TIMEOUT_S": "1",
    "ROUTING_POINTS_CONSUMPTION_TIMEOUT_S": "1.5",
}


def exchange(port: int, raw: bytes, wait: float = 5.0) -> str:
    """The status line and body of the answer to `raw` (every request says close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(raw)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    return f"{status} | body {body[:60]!r}" if answer else "no answer"


def request(*lines: str, path: str = ENDPOINT) -> bytes:
    head = [f"GET {path} HTTP/1.1", "Host: x", *lines, "Connection: close", "", ""]
    return "\r\n".join(head).encode()


def held_open(port: int, head: bytes, piece: Callable[[int], bytes], seconds: float) -> str:
    """Send `head`, then a piece every 0.3 s: how long until the server dropped it."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(0)  # non-blocking: recv says at once whether the server closed
        for index in range(int(seconds / 0.3)):
            try:
                if piece(index):
                    sock.sendall(piece(index))
                if sock.recv(1, socket.MSG_DONTWAIT) == b"":
                    return f"dropped after {time.monotonic() - started:.1f} s"
            except BlockingIOError:
                pass
            except OSError:
                return f"dropped after {time.monotonic() - started:.1f} s"
            time.sleep(0.3)
    return f"still open after {seconds:.0f} s"


def stalled_readers(port: int, token: str) -> str:
    """Two clients that never read a 9.8 MB answer hold the token's 2 slots (L8): is a
    third request still refused after the send deadline (1 s) has long passed?"""
    readers = []
    for _ in range(2):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request(f"wolkvox-token: {token}", "Accept-Encoding: identity"))
        readers.append(sock)
    try:
        time.sleep(8)
        return "third request 8 s later: " + exchange(port, request(f"wolkvox-token: {token}"))[:30]
    finally:
        for sock in readers:
            sock.close()


def checks(port: int, token: str) -> dict[str, str]:
    many = [f"X-H{index}: 1" for index in range(150)]
    return {
        "1 MB header (cap 32 KiB)": exchange(port, request("X-Big: " + "a" * (1 << 20))),
        "40 KB header": exchange(port, request("X-Big: " + "a" * 40_000)),
        "150 headers (cap 100)": exchange(port, request(*many)),
        "not HTTP": exchange(port, b"\x16\x03\x01garbage\r\n\r\n"),
        "headers trickled": held_open(
            port, b"GET / HTTP/1.1\r\nHost: x\r\n", lambda i: f"X-S{i}: 1\r\n".encode(), 9
        ),
        "connection sending nothing": held_open(port, b"", lambda _i: b"", 9),
        "form body trickled": held_open(
            port,
            b"POST /console/signin HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
            lambda _i: b"a",
            9,
        ),
        "2 stalled readers, same token": stalled_readers(port, token),
    }


def main() -> None:
    if importlib.util.find_spec("granian") is None:
        sys.exit("granian is not installed (a comparison only: .venv/bin/pip install granian)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    fixture = seed(f"sqlite:///{WORK / 'bench.db'}", 1)
    copy = WORK / "wire-granian.db"
    shutil.copyfile(WORK / "bench.db", copy)
    found: dict[str, dict[str, str]] = {}
    uvicorn_port, granian_port = free_port(), free_port()
    with serve_ours(uvicorn_port, fixture.database, env=DEADLINES):
        found["uvicorn"] = checks(uvicorn_port, fixture.big_token)
    env = {**QUIET, **DEADLINES, "ROUTING_POINTS_DATABASE_URL": f"sqlite:///{copy}"}
    factory = "routing_points.server.app:app_from_environment"
    options = ["--http1-header-read-timeout", "1000"]
    with serve_granian(granian_port, factory, env, options, factory=True):
        found["granian"] = checks(granian_port, fixture.big_token)
    for name in found["uvicorn"]:
        print(name)
        for server, results in found.items():
            print(f"  {server:<8} {results[name]}")


if __name__ == "__main__":
    main()
