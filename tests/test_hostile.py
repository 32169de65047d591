"""Hostile bytes and slow peers over a real uvicorn server, sent as exact bytes on sockets."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, text

from routing_points.store import tenants
from tests.support.processes import ServerProcess, cli
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, make_settings
from tests.support.services import free_port, until_charges_counted
from tests.support.wire import ENDPOINT

POINTS = f"{ENDPOINT}?api=routing_points"


def exchange(port: int, raw: bytes, timeout: float = 15) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send exact bytes, read until the server closes (every request says close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), fields, body


def request(path: str, *header_lines: bytes) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *header_lines]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


def assert_envelope(
    answer: tuple[int, dict[bytes, bytes], bytes], status: int, msg: str | None = None
) -> None:
    code, fields, body = answer
    assert code == status, body
    assert fields[b"content-type"] == b"application/json"
    envelope = orjson.loads(body)
    assert set(envelope) == {"code", "error", "msg", "data"}
    assert envelope["code"] == status
    assert envelope["data"] is None
    if msg is not None:
        assert envelope["msg"] == msg


@pytest.fixture
def admin_token(engine: Engine, tenant: Tenant) -> tenants.NewToken:
    return tenants.add_token(engine, tenant.server, "admin", scope="admin")


@pytest.fixture
def bounded(database_url: str, tenant: Tenant) -> Iterator[LiveServer]:
    """Short per-connection deadlines, so the test waits seconds, not the defaults."""
    settings = make_settings(database_url, header_timeout_s=1.0, send_timeout_s=1.0)
    server = LiveServer(settings).start()
    yield server
    server.stop()


@pytest.mark.parametrize("value", ["٠٠٣٢".encode(), b"\xb2\xb3", b"wv\xff", b"\xc3\x28"])
@pytest.mark.parametrize("name", [b"wolkvox_server", b"wolkvox-server"])
def test_non_ascii_operation_names_are_403_never_500(
    live: LiveServer, tenant: Tenant, admin_token: tenants.NewToken, name: bytes, value: bytes
) -> None:
    token = f"wolkvox-token: {tenant.token}".encode()
    answer = exchange(live.port, request(POINTS, token, name + b": " + value))
    assert_envelope(answer, 403, "PLEASE VALIDATE TOKEN")
    # Every admin route authenticates the same way.
    admin_header = f"wolkvox-token: {admin_token.secret}".encode()
    for method, path in [
        ("GET", "/api/v2/admin/usage_report?date_ini=20261101000000&date_end=20261102000000"),
        ("DELETE", "/api/v2/admin/routing_points/101"),
        ("POST", "/api/v2/admin/routing_points"),
    ]:
        raw = request(path, admin_header, name + b": " + value).replace(b"GET", method.encode(), 1)
        assert_envelope(exchange(live.port, raw), 403, "PLEASE VALIDATE TOKEN")


def test_a_repeated_token_header_is_refused(live: LiveServer, tenant: Tenant) -> None:
    token = f"wolkvox-token: {tenant.token}".encode()
    for second in (token, b"wolkvox-token: other"):
        answer = exchange(live.port, request(POINTS, token, second))
        assert_envelope(answer, 400, "THE WOLKVOX-TOKEN HEADER IS REPEATED")
    assert live.in_flight(tenant.token_id) == 0


@pytest.mark.parametrize(
    "header",
    [
        b"wolkvox-token: \xff\xfe\x00",
        b"wolkvox-token: " + "токен".encode(),
        b'If-None-Match: \xff"x"',
        b"Host: wv\xb2\xb3.example",
        b"Host: wv0032.\xff",
        b"X-Request-ID: \xff\x1b[31m",
        b"Accept-Encoding: \xff, gzip;q=\xff",
        b"Content-Length: \xff",
    ],
)
def test_hostile_header_values_get_the_envelope(
    live: LiveServer, tenant: Tenant, header: bytes
) -> None:
    token = f"wolkvox-token: {tenant.token}".encode()
    lines = [header] if header.startswith(b"wolkvox-token") else [token, header]
    code, fields, body = exchange(live.port, request(POINTS, *lines))
    assert 200 <= code < 500, body
    if code != 200:
        assert fields[b"content-type"] == b"application/json"
        assert orjson.loads(body)["data"] is None


@pytest.mark.parametrize(
    "query",
    [
        "api=routing_points&routing=%ff%00",
        "api=routing_points&routing=99999999999999999999999",
        "api=routing_points&after=-1",
        "api=%ff%fe",
        "api=routing_points&routing=%D9%A0",
        "api=routing_points&api=\x7f",
    ],
)
def test_hostile_query_strings_get_the_envelope(
    live: LiveServer, tenant: Tenant, query: str
) -> None:
    token = f"wolkvox-token: {tenant.token}".encode()
    raw = request(f"{ENDPOINT}?{query}", token).replace(b"\x7f", b"%7f")
    code, fields, body = exchange(live.port, raw)
    assert code == 400, body
    assert fields[b"content-type"] == b"application/json"


def test_no_redirect_is_built_from_the_host(live: LiveServer, tenant: Tenant) -> None:
    token = f"wolkvox-token: {tenant.token}".encode()
    raw = request(f"{ENDPOINT}/?api=routing_points", token).replace(
        b"Host: 127.0.0.1", b"Host: evil.example"
    )
    answer = exchange(live.port, raw)
    assert_envelope(answer, 404)
    assert b"location" not in answer[1]


def test_parser_errors_come_back_in_the_envelope(live: LiveServer) -> None:
    for raw in (b"\x16\x03\x01garbage\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"):
        assert_envelope(exchange(live.port, raw), 400, "THE REQUEST IS NOT VALID HTTP")


def test_header_size_and_count_are_capped(live: LiveServer, tenant: Tenant) -> None:
    cap = live.settings.max_header_bytes
    token = f"wolkvox-token: {tenant.token}".encode()
    # One header of 1 MB: refused long before it ends (the cap is 32 KiB).
    huge = exchange(live.port, request(POINTS, token, b"X-Big: " + b"a" * (1024 * 1024)))
    assert_envelope(huge, 431)
    assert cap == 32 * 1024
    # 150 small headers: over the count cap of 100.
    many = [f"X-H{index}: 1".encode() for index in range(150)]
    assert_envelope(exchange(live.port, request(POINTS, token, *many)), 431)
    # Just under both caps: served.
    assert exchange(live.port, request(POINTS, token, *many[:90]))[0] == 200


def trickle(sock: socket.socket, head: bytes, piece: Callable[[int], str]) -> tuple[bool, float]:
    """Send `head`, then a piece every 0.3 s for 9 s: (dropped by the server, seconds held)."""
    started = time.monotonic()
    sock.sendall(head)
    closed = False
    for index in range(30):
        try:
            sock.sendall(piece(index).encode())
            closed = sock.recv(1, socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed = True
        if closed:
            break
        time.sleep(0.3)
    return closed, time.monotonic() - started


def test_slow_headers_are_dropped_at_the_deadline(bounded: LiveServer) -> None:
    """Slowloris: a header line every 0.3 s never completes; the 1 s deadline drops it."""
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
        closed, held = trickle(
            sock, b"GET / HTTP/1.1\r\nHost: x\r\n", lambda index: f"X-Slow-{index}: 1\r\n"
        )
    assert closed, "a connection trickling headers for 9 s was never dropped (deadline: 1 s)"
    assert held < 9, f"held {held:.1f} s against a 1 s header deadline"
    # An idle connection that sends nothing at all is dropped too.
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
        assert sock.recv(1) == b""


def test_bad_bytes_pipelined_behind_a_request_log_no_error(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone could make two tracebacks a connection: a valid request and garbage in one
    write had the 400 cut into the first request's answer ("write() after write_eof()")."""
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
            while sock.recv(65536):
                pass
    time.sleep(0.2)  # the first requests' tasks end after the connections do
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []
    # The server still answers.
    assert exchange(live.port, request("/healthz"))[0] == 200


def answers(port: int, raw: bytes) -> list[tuple[int, bytes]]:
    """Send exact bytes, read until the server closes: every answer's (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    found = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        found.append((int(head.split()[1]), rest[:length]))
        received = rest[length:]
    return found


def used_today(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT COALESCE(SUM(count), 0) FROM usage_counters")
            ).scalar_one()
        )


def test_bad_bytes_behind_a_request_are_refused_after_its_answer(
    live: LiveServer, tenant: Tenant, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The request before the bad bytes was charged: it is answered, then the bad bytes are
    refused in the envelope (the connection used to be dropped, the answer lost)."""
    token = f"wolkvox-token: {tenant.token}".encode()
    keep_alive = b"\r\n".join([f"GET {POINTS} HTTP/1.1".encode(), b"Host: x", token, b"", b""])
    invalid = b"\r\n".join([b"GET / HTTP/1.1", b"Host: x", b"Bad Header", b"", b""])
    for garbage in (b"GARBAGE\x00\xff\r\n\r\n", invalid):
        got = answers(live.port, keep_alive + keep_alive + garbage + keep_alive)
        assert [status for status, _ in got] == [200, 200, 400]
        assert orjson.loads(got[0][1])["code"] == 200
        assert orjson.loads(got[2][1])["msg"] == "THE REQUEST IS NOT VALID HTTP"
    until_charges_counted(live.settings.database_url)
    assert used_today(engine) == 4  # the four answered, none after the bad bytes
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []


@pytest.mark.parametrize(
    "framing",
    [
        [b"Transfer-Encoding: gzip"],
        [b"Transfer-Encoding: identity"],
        [b"Transfer-Encoding: chunked", b"", b"zz", b"hello", b"0", b""],
    ],
)
def test_a_request_with_a_body_it_cannot_frame_is_refused_uncharged(
    live: LiveServer, tenant: Tenant, engine: Engine, framing: list[bytes]
) -> None:
    token = f"wolkvox-token: {tenant.token}".encode()
    head = [f"GET {POINTS} HTTP/1.1".encode(), b"Host: x", token]
    raw = b"\r\n".join([*head, *framing]) + (b"\r\n\r\n" if framing[-1] != b"" else b"\r\n")
    got = answers(live.port, raw)
    assert [status for status, _ in got] == [400]
    assert orjson.loads(got[0][1])["msg"] == "THE REQUEST IS NOT VALID HTTP"
    # One call after it: once it is answered, every charge before it is committed too.
    assert exchange(live.port, request(POINTS, token))[0] == 200
    assert used_today(engine) == 1


def test_a_trickled_body_is_dropped_at_the_time_limit(
    database_url: str, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """A form posted a byte at a time (no token needed: the console's sign-in) is dropped
    once the time limit has passed since its headers, without a 500 or a traceback."""
    settings = make_settings(database_url, header_timeout_s=1.0, consumption_timeout_s=1.5)
    server = LiveServer(settings).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head = (
                b"POST /console/signin HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\n"
            )
            closed, held = trickle(sock, head, lambda _index: "a")
    finally:
        server.stop()
    assert closed, "a body trickled for 9 s was never dropped (time limit: 1.5 s)"
    assert 1.4 < held < 9, f"held {held:.1f} s against a 1.5 s time limit"
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []


def stalled_reader(port: int, token: str) -> socket.socket:
    """A client that asks for a big answer and never reads it (a tiny receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request(POINTS, f"wolkvox-token: {token}".encode()))
    return sock


def wait_until(condition: object, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_stalled_readers_hold_their_slot_until_dropped(engine: Engine, bounded: LiveServer) -> None:
    """The slot is held until the body is sent: stalled readers are bounded by the
    per-token limit (2), and the 1 s send deadline gives their slots back."""
    big = add_tenant(
        engine, "0077", [point(rp_id, "n" * 250) for rp_id in range(1, 20_001)]
    )  # about 8 MB: more than the socket buffers of both ends
    readers = [stalled_reader(bounded.port, big.token) for _ in range(2)]
    try:
        assert wait_until(lambda: bounded.in_flight(big.token_id) == 2)
        third = exchange(bounded.port, request(POINTS, f"wolkvox-token: {big.token}".encode()))
        assert_envelope(third, 403, "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)")
        # The send deadline (1 s) drops both stalled readers and frees their 2 slots.
        assert wait_until(lambda: bounded.in_flight(big.token_id) == 0), (
            f"{bounded.in_flight(big.token_id)} of 2 slots still held after 15 s"
        )
    finally:
        for sock in readers:
            sock.close()
    # A reader that reads gets all of it.
    code, _, body = exchange(bounded.port, request(POINTS, f"wolkvox-token: {big.token}".encode()))
    assert code == 200
    assert orjson.loads(body)["msg"] == "20000 records were found"


def test_an_admin_client_hanging_up_mid_upload_is_no_500(
    live: LiveServer, admin_token: tenants.NewToken, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    raw = (
        b"POST /api/v2/admin/routing_points/bulk HTTP/1.1\r\nHost: x\r\n"
        + f"wolkvox-token: {admin_token.secret}\r\n".encode()
        + b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[{"rp_id": "5"'
    )
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(raw)
        time.sleep(0.3)
    assert wait_until(lambda: live.in_flight(admin_token.id) == 0)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], [record.getMessage() for record in errors]


def test_a_websocket_upgrade_and_a_head_are_ordinary_requests(tmp_path: Path) -> None:
    """uvicorn answered an Upgrade 403 text/plain with no body, outside the envelope; the
    console took a HEAD of its sign-in page for a post, a 403 that set a cookie."""
    database = f"sqlite:///{tmp_path / 'ws.db'}"
    assert cli("migrate", "--database", database).returncode == 0
    added = cli(
        "operations", "add", "0032", "--name", "Acme", "--licenses", "1", "--database", database
    )
    assert added.returncode == 0, added.stderr
    secret = cli("tokens", "add", "0032", "--database", database).stdout.splitlines()[-1]
    process = ServerProcess("serve", "--database", database, port=free_port()).wait_ready()
    try:
        upgrade = {
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
        }
        served = httpx.get(
            f"{process.url}{ENDPOINT}",
            params={"api": "routing_points"},
            headers={**upgrade, "wolkvox-token": secret},
        )
        unknown = httpx.get(f"{process.url}/chat", headers=upgrade)
        head = httpx.head(f"{process.url}/console/signin")
    finally:
        assert process.stop()
    assert served.status_code == 200
    assert served.json()["code"] == 200
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "NOT FOUND"
    assert head.status_code == 200
