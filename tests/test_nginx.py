"""A real nginx (Debian's) in front of two servers: the README's "Scaling out" setup."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.support.processes import ServerProcess, wait_for_port
from tests.support.seed import add_tenant, point
from tests.support.servers import headers, server_env
from tests.support.services import RedisNamespace, free_port
from tests.support.wire import ENDPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

DEPLOY_CONFIG = Path(__file__).parent.parent / "deploy" / "nginx.conf"


def nginx_config(folder: Path, port: int, upstreams: list[int]) -> str:
    """The shipped deploy/nginx.conf, pointed at this test's servers and folder."""
    site = DEPLOY_CONFIG.read_text()
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstreams)
    site = site.replace(
        "    server 10.0.0.11:8000;   # host A\n    server 10.0.0.12:8000;   # host B\n", servers
    )
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    # The header deadline, shortened so the slowloris test waits 1 s, not 10.
    site = site.replace("client_header_timeout 10s;", "client_header_timeout 1s;")
    temp = "".join(
        f"{kind}_temp_path {folder}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log;\nevents {{ worker_connections 256; }}\n"
        f"http {{\naccess_log off;\n{temp}{site}\n}}\n"
    )


@pytest.fixture
def nginx_binary() -> str:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        from tests.support.services import service_missing

        service_missing("nginx", FileNotFoundError("nginx (apt-get install nginx)"))
    return binary


@pytest.fixture
def behind_nginx(
    tmp_path: Path, nginx_binary: str, database_url: str, redis_namespace: RedisNamespace
) -> Iterator[tuple[str, list[ServerProcess]]]:
    servers = [
        ServerProcess(
            "serve",
            "--database",
            database_url,
            "--redis",
            redis_namespace.url,
            port=free_port(),
            env=server_env(redis_namespace),
        ).wait_ready()
        for _ in range(2)
    ]
    port = free_port()
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_config(tmp_path, port, [s.port for s in servers]))
    nginx = subprocess.Popen(
        [nginx_binary, "-c", str(config), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, nginx)
        yield f"http://127.0.0.1:{port}", servers
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        if nginx.stderr is not None:
            nginx.stderr.close()
        for server in servers:
            server.stop()


def test_operation_matching_works_through_nginx(
    engine: Engine, behind_nginx: tuple[str, list[ServerProcess]]
) -> None:
    url, _ = behind_nginx
    tenant = add_tenant(engine, "0032", [point(1)])
    add_tenant(engine, "0033")
    cases = [
        ({"wolkvox_server": "0032"}, 200),
        ({"wolkvox_server": "0033"}, 403),  # only refused if nginx passed the underscore header
        ({"wolkvox-server": "0033"}, 403),
        ({"host": "wv0032.wolkvox.com"}, 200),
        ({"host": "wv0033.wolkvox.com"}, 403),
    ]
    with httpx.Client(base_url=url) as http:
        for extra, status in cases:
            response = http.get(
                f"{ENDPOINT}?api=routing_points",
                headers=headers(tenant.token, **extra, connection="close"),
            )
            assert response.status_code == status, extra
            assert response.json()["code"] == status
        served_by = {
            http.get(f"{ENDPOINT}?api=token_info", headers=headers(tenant.token)).status_code
            for _ in range(4)
        }
    assert served_by == {200}


def test_nginx_bounds_headers_in_the_envelope(
    engine: Engine, behind_nginx: tuple[str, list[ServerProcess]]
) -> None:
    url, _ = behind_nginx
    tenant = add_tenant(engine, "0032", [point(1)])
    port = int(url.rsplit(":", 1)[1])
    with httpx.Client(base_url=url) as http:
        huge = http.get(
            f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token, x_big="a" * 40_000)
        )
        packed = http.get(
            f"{ENDPOINT}?api=routing_points",
            headers=headers(tenant.token, **{"accept-encoding": "gzip"}),
        )
    assert huge.status_code == 431
    assert huge.headers["content-type"] == "application/json"
    assert huge.json()["code"] == 431
    # gzip goes through nginx untouched, with its own ETag.
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["etag"].endswith('-gz"')
    # Slowloris: nginx drops a connection whose headers are not in within 1 s.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        while sock.recv(65536):
            pass
        held = time.monotonic() - started
    assert held < 9, f"an unfinished request held {held:.1f} s against a 1 s header deadline"
