"""What a hostile client found against a real `serve` process, each now refused in the envelope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from routing_points.store import access, tenants
from tests.support.processes import ServerProcess
from tests.support.seed import Tenant
from tests.support.services import free_port
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.slow
POINTS = f"{ENDPOINT}?api=routing_points"


@pytest.fixture
def served(tmp_path: Path, database_url: str, tenant: Tenant) -> Iterator[ServerProcess]:
    server = ServerProcess(
        "serve",
        "--database",
        database_url,
        port=free_port(),
        env={"ROUTING_POINTS_ACCESS_LOG": "false"},
    )
    yield server.wait_ready()
    server.stop()


def test_a_forged_forwarded_for_is_not_believed_without_trusted_proxies(
    served: ServerProcess, engine: Engine, tenant: Tenant
) -> None:
    access.add_network(engine, "0032", "203.0.113.5")
    with httpx.Client(base_url=served.url) as http:
        forged = http.get(
            POINTS, headers={"wolkvox-token": tenant.token, "x-forwarded-for": "203.0.113.5"}
        )
        garbage = http.get(
            POINTS, headers={"wolkvox-token": tenant.token, "x-forwarded-for": "not-an-ip%0aX"}
        )
    assert forged.status_code == 403
    assert forged.json()["msg"] == "THE ADDRESS 127.0.0.1 IS NOT IN THE OPERATION'S IP ALLOW-LIST"
    assert "not-an-ip" not in garbage.text


def test_a_far_future_expiry_is_refused_before_anything_is_written(
    served: ServerProcess, engine: Engine, tenant: Tenant
) -> None:
    admin_token = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    before = len(tenants.list_tokens(engine, "0032"))
    with httpx.Client(base_url=served.url, headers={"wolkvox-token": admin_token}) as http:
        answers = [
            http.post("/api/v2/admin/tokens", json={"description": "x", "expires": expires})
            for expires in ("9999-12-31", "500000w")
        ]
        listed = http.get("/api/v2/admin/tokens")
    assert [answer.status_code for answer in answers] == [400, 400]
    assert all("EXPIRES" in answer.json()["msg"].upper() for answer in answers)
    assert len(tenants.list_tokens(engine, "0032")) == before
    assert listed.status_code == 200


def test_a_report_of_year_9999_and_repeated_parameters_are_400(
    served: ServerProcess, engine: Engine, tenant: Tenant
) -> None:
    admin_token = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    with httpx.Client(base_url=served.url) as http:
        report = http.get(
            "/api/v2/admin/usage_report?date_ini=99991201000000&date_end=99991231235959",
            headers={"wolkvox-token": admin_token},
        )
        repeated = http.get(
            f"{ENDPOINT}?api=routing_points&api=token_info",
            headers={"wolkvox-token": tenant.token},
        )
    assert report.status_code == 400
    assert report.json()["data"] is None
    assert repeated.status_code == 400
    assert repeated.json()["msg"].endswith("API IS GIVEN MORE THAN ONCE")
