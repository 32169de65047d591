"""The wire contract (API.md sections 2-5), in-process and over a real uvicorn server."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from routing_points.store import points as point_store
from routing_points.store import tenants
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, headers
from tests.support.wire import ENDPOINT, FIELDS, SALES_LINE

pytestmark = [
    pytest.mark.anyio,
    # The same contract from both stores.
    pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True),
]


def assert_envelope(response: httpx.Response, status: int, error: str, msg: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": status, "error": error, "msg": msg, "data": None}


async def test_routing_points_answer_is_the_contract_envelope(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.get(f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["code", "error", "msg", "data"]
    assert body["code"] == 200
    assert body["error"] is None
    assert body["msg"] == "3 records were found"
    # Ordered numerically (1000 after 102), every value a string, in the contract's field order.
    assert [record["rp_id"] for record in body["data"]] == ["101", "102", "1000"]
    for record in body["data"]:
        assert list(record) == FIELDS
        assert all(isinstance(value, str) for value in record.values())
    assert body["data"][0] == SALES_LINE
    assert body["data"][1]["last_use"] == ""
    assert body["data"][1]["chat_active"] == "yes"


async def test_last_use_is_stored_in_utc_and_rendered_in_the_operations_zone(
    engine: Engine, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    _, rows = point_store.list_points(engine, tenant.server)
    by_id = {row.rp_id: row for row in rows}
    # 14:03:11 in Bogota (UTC-5) is 19:03:11 UTC.
    assert by_id[101].last_use_at == datetime(2026, 11, 20, 19, 3, 11, tzinfo=UTC).timestamp()
    point_store.set_point(engine, tenant.server, 102, {"last_use": "2026-03-08 02:30:00"})
    response = await client.get(f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token))
    assert response.json()["data"][1]["last_use"] == "2026-03-08 02:30:00"


async def test_routing_filter(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(
        f"{ENDPOINT}?api=routing_points&routing=102", headers=headers(tenant.token)
    )
    body = response.json()
    assert body["msg"] == "1 records were found"
    assert [record["rp_name"] for record in body["data"]] == ["Support chat"]


async def test_routing_that_matches_nothing_is_an_empty_200(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.get(
        f"{ENDPOINT}?api=routing_points&routing=999", headers=headers(tenant.token)
    )
    assert response.status_code == 200
    assert response.json() == {
        "code": 200,
        "error": None,
        "msg": "0 records were found",
        "data": [],
    }


async def test_operation_without_points_is_an_empty_200(
    engine: Engine, client: httpx.AsyncClient
) -> None:
    empty = add_tenant(engine, "0040")
    response = await client.get(f"{ENDPOINT}?api=routing_points", headers=headers(empty.token))
    assert response.status_code == 200
    assert response.json()["data"] == []
    assert response.json()["msg"] == "0 records were found"


# The last: full-width digits, which str.isdigit() accepts.
@pytest.mark.parametrize("routing", ["abc", "-1", "1.5", "\uff11\uff12"])
async def test_malformed_routing_is_a_400(
    client: httpx.AsyncClient, tenant: Tenant, routing: str
) -> None:
    response = await client.get(
        ENDPOINT,
        params={"api": "routing_points", "routing": routing},
        headers=headers(tenant.token),
    )
    assert_envelope(
        response,
        400,
        "BAD REQUEST",
        "SOME PARAMETERS ARE REQUIRED: ROUTING MUST BE A NON-NEGATIVE INTEGER",
    )


@pytest.mark.parametrize("query", ["", "?api=", "?api=agents", "?api=ROUTING_POINTS"])
async def test_unknown_or_missing_api(
    client: httpx.AsyncClient, tenant: Tenant, query: str
) -> None:
    response = await client.get(f"{ENDPOINT}{query}", headers=headers(tenant.token))
    assert_envelope(response, 400, "BAD REQUEST", "THE API YOU WANT TO CONSULT DOES NOT EXIST")


@pytest.mark.parametrize("token_headers", [{}, {"wolkvox-token": ""}, {"wolkvox-token": "  "}])
async def test_missing_token_is_a_401(
    client: httpx.AsyncClient, token_headers: dict[str, str]
) -> None:
    response = await client.get(f"{ENDPOINT}?api=routing_points", headers=token_headers)
    assert_envelope(response, 401, "UNAUTHORIZED", "PLEASE ENTER THE WOLKVOX-TOKEN")
    assert "ratelimit" not in response.headers


async def test_unknown_token_is_a_403(client: httpx.AsyncClient) -> None:
    response = await client.get(
        f"{ENDPOINT}?api=routing_points", headers=headers("not-a-real-token")
    )
    assert_envelope(response, 403, "FORBIDDEN", "PLEASE VALIDATE TOKEN")


async def test_revoked_token_is_a_403(
    engine: Engine, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    url = f"{ENDPOINT}?api=routing_points"
    assert (await client.get(url, headers=headers(tenant.token))).status_code == 200
    tenants.revoke_token(engine, tenant.token_id)
    # Another connection's commit is seen within a millisecond (the check is cached that long).
    await asyncio.sleep(0.002)
    response = await client.get(url, headers=headers(tenant.token))
    assert_envelope(response, 403, "FORBIDDEN", "PLEASE VALIDATE TOKEN")


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"wolkvox_server": "0032"}, 200),
        ({"wolkvox-server": "0032"}, 200),
        ({"wolkvox_server": "32"}, 200),
        ({"wolkvox_server": "wv0032"}, 200),
        ({"host": "wv0032.wolkvox.com"}, 200),
        ({"host": "WV0032.example.org:8443"}, 200),
        ({"host": "api.example.org"}, 200),
        ({"wolkvox_server": "0033"}, 403),
        ({"wolkvox-server": "0033"}, 403),
        ({"wolkvox_server": "garbage"}, 403),
        ({"host": "wv0033.wolkvox.com"}, 403),
        ({"host": "wv0032.wolkvox.com", "wolkvox_server": "0033"}, 403),
        ({"host": "wv0033.wolkvox.com", "wolkvox_server": "0032"}, 403),
    ],
)
async def test_the_named_operation_must_be_the_tokens(
    client: httpx.AsyncClient, tenant: Tenant, extra: dict[str, str], status: int
) -> None:
    response = await client.get(
        f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token, **extra)
    )
    assert response.status_code == status
    if status == 403:
        assert response.json()["msg"] == "PLEASE VALIDATE TOKEN"


async def test_a_foreign_operation_is_refused_like_an_unknown_one(
    engine: Engine, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    add_tenant(engine, "0033")
    existing = await client.get(
        f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token, wolkvox_server="0033")
    )
    missing = await client.get(
        f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token, wolkvox_server="0099")
    )
    assert existing.content == missing.content
    assert existing.status_code == missing.status_code == 403


async def test_operations_never_see_each_other(
    engine: Engine, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    other = add_tenant(engine, "0077", [point(101, "Other sales"), point(555, "Other only")])
    mine = await client.get(f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token))
    theirs = await client.get(f"{ENDPOINT}?api=routing_points", headers=headers(other.token))
    assert [r["rp_name"] for r in mine.json()["data"]] == [
        "Sales line",
        "Support chat",
        "Night shift",
    ]
    assert [r["rp_name"] for r in theirs.json()["data"]] == ["Other sales", "Other only"]
    filtered = await client.get(
        f"{ENDPOINT}?api=routing_points&routing=555", headers=headers(tenant.token)
    )
    assert filtered.json()["data"] == []
    for _ in range(3):
        await client.get(f"{ENDPOINT}?api=routing_points", headers=headers(other.token))
    info = await client.get(f"{ENDPOINT}?api=token_info", headers=headers(tenant.token))
    record = info.json()["data"][0]
    assert record["all_token_today"] == "3"  # its own 3 calls, none of the other operation's


async def test_token_info_fields(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(f"{ENDPOINT}?api=token_info", headers=headers(tenant.token))
    body = response.json()
    assert body["code"] == 200
    assert body["msg"] == "1 records were found"
    assert body["data"] == [
        {
            "description": "token of 0032",
            "token_limit": "1000",
            "token_use_today": "1",
            "all_token_today": "1",
            "available_consumption_options": "999",
        }
    ]


async def test_unknown_path_and_method_use_the_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(
        await client.get("/api/v2/other.php"),
        404,
        "NOT FOUND",
        "THE RESOURCE YOU ARE LOOKING FOR DOES NOT EXIST",
    )
    response = await client.post(f"{ENDPOINT}?api=routing_points")
    assert_envelope(response, 405, "METHOD NOT ALLOWED", "METHOD NOT ALLOWED")
    assert "GET" in response.headers["allow"]


async def test_request_ids_and_the_log_never_holds_the_token(
    database_url: str, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    from routing_points.server import create_app
    from routing_points.settings import Settings
    from tests.support.servers import asgi_client

    app = create_app(Settings(database_url=database_url))
    caplog.set_level(logging.INFO, logger="routing_points.access")
    async with asgi_client(app) as client:
        first = await client.get(f"{ENDPOINT}?api=routing_points", headers=headers(tenant.token))
        echoed = await client.get(
            f"{ENDPOINT}?api=token_info",
            headers=headers(tenant.token, **{"x-request-id": "trace-42"}),
        )
        refused = await client.get(f"{ENDPOINT}?api=routing_points", headers=headers("bad-x"))
    assert len(first.headers["x-request-id"]) == 16
    assert echoed.headers["x-request-id"] == "trace-42"
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("GET /api/v2/information.php?api=routing_points 200 ")
    assert lines[0].endswith(f"id={first.headers['x-request-id']}")
    assert " 403 " in lines[2]
    assert "trace-42" in lines[1]
    log_text = "\n".join(lines)
    assert tenant.token not in log_text
    assert "bad-x" not in log_text
    assert refused.status_code == 403


def test_a_client_written_for_the_vendor_works_unchanged(live: LiveServer, tenant: Tenant) -> None:
    """What third-party clients of the real service do, with only the base URL changed."""
    base = live.url  # instead of https://wv0032.wolkvox.com
    with httpx.Client(timeout=90) as http:
        response = http.get(
            f"{base}/api/v2/information.php",
            params={"api": "routing_points"},
            headers={"wolkvox-token": tenant.token, "wolkvox_server": "0032"},
        )
        response.raise_for_status()
        payload = orjson.loads(response.content)
    assert payload["code"] in (200, "200")
    data = payload["data"]
    records = data if isinstance(data, list) else [data]
    assert {record["rp_id"] for record in records} == {"101", "102", "1000"}


def test_errors_over_real_http(live: LiveServer, tenant: Tenant) -> None:
    with httpx.Client(base_url=live.url) as http:
        cases = [
            (http.get(f"{ENDPOINT}?api=nope", headers=headers(tenant.token)), 400),
            (
                http.get(f"{ENDPOINT}?api=routing_points&routing=x", headers=headers(tenant.token)),
                400,
            ),
            (http.get(f"{ENDPOINT}?api=routing_points"), 401),
            (http.get(f"{ENDPOINT}?api=routing_points", headers=headers("wrong")), 403),
            (
                http.get(
                    f"{ENDPOINT}?api=routing_points",
                    headers=headers(tenant.token, wolkvox_server="0099"),
                ),
                403,
            ),
            (http.get("/missing"), 404),
        ]
    for response, status in cases:
        assert response.status_code == status
        assert response.json()["code"] == status
        assert response.json()["data"] is None
