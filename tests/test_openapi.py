"""The OpenAPI document describes the whole API, and schemathesis finds nothing against it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from starlette.routing import Mount, Route

from routing_points.server import create_app
from routing_points.server.openapi import openapi_document
from routing_points.store import tenants
from tests.support.processes import ServerProcess, cli
from tests.support.seed import Tenant
from tests.support.servers import LiveServer, make_settings
from tests.support.services import free_port

# Every check schemathesis has, input validation included (positive_data_acceptance,
# negative_data_rejection): the document says exactly what the server takes, except the
# rules across fields that JSON Schema cannot state (tests/schemathesis.toml says which).
CHECKS = "all"


def test_every_route_is_described(database_url: str) -> None:
    app = create_app(make_settings(database_url))
    paths = openapi_document(make_settings(database_url))["paths"]
    routes = {
        route.path.replace(":rp_id", "")
        for route in app.routes
        if isinstance(route, Route)
        and route.path not in ("/", "/openapi.json", "/docs", "/metrics")
        # The console is HTML for people, not part of the API.
        and not route.path.startswith("/console")
    }
    assert routes == set(paths)
    assert any(isinstance(route, Mount) for route in app.routes)
    information = paths["/api/v2/information.php"]["get"]
    example = information["responses"]["200"]["content"]["application/json"]["schema"]
    assert example["anyOf"]


def test_openapi_and_docs_are_served(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as http:
        document = http.get("/openapi.json")
        docs = http.get("/docs")
        asset = http.get("/docs/static/swagger-ui-bundle.js")
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1")
    schemas = document.json()["components"]["schemas"]
    assert schemas["RoutingPoint"]["example"]["last_use"] == "2026-11-20 14:03:11"
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text
    assert asset.status_code == 200
    assert len(asset.content) > 100_000


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_break(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'fuzz.db'}"
    assert cli("migrate", "--database", database).returncode == 0
    assert (
        cli(
            "operations",
            "add",
            "0032",
            "--name",
            "Fuzz",
            "--licenses",
            "1000",
            "--timezone",
            "America/Bogota",
            "--database",
            database,
        ).returncode
        == 0
    )
    token = cli(
        "tokens", "add", "0032", "--scope", "admin", "--database", database
    ).stdout.splitlines()[-1]
    server = ServerProcess(
        "serve",
        "--database",
        database,
        port=free_port(),
        env={"ROUTING_POINTS_ACCESS_LOG": "false"},
    ).wait_ready()
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"wolkvox-token: {token}",
                "--checks",
                CHECKS,
                "--max-examples",
                "15",
                "--workers",
                "1",
                "--seed",
                "20261127",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        server.stop()
    Path(tmp_path / "st.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:]


def test_errors_name_the_wrong_field(live: LiveServer, engine: Engine, tenant: Tenant) -> None:
    secret = tenants.add_token(engine, tenant.server, "admin", scope="admin").secret
    with httpx.Client(base_url=live.url, headers={"wolkvox-token": secret}) as http:
        event = http.post(
            "/api/v2/admin/usage_events",
            json=[{"rp_id": "101", "channel": "ivr", "at": "2026-02-30 10:00:00"}],
        )
        change = http.patch("/api/v2/admin/routing_points/101", json={"last_use": "2026-13-01"})
    assert event.status_code == 400
    assert event.json()["msg"] == (
        "EVENT AT INDEX 0: AT: '2026-02-30 10:00:00' IS NOT YYYY-MM-DD HH:MM:SS"
    )
    assert change.status_code == 400
    assert change.json()["msg"].startswith("LAST_USE: ")
