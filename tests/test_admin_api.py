"""The admin API: scoped tokens, single writes, bulk upload (L4), events, report (L5)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from routing_points.store import audit, tenants
from routing_points.store import points as point_store
from tests.support.processes import ServerProcess
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, headers, make_settings
from tests.support.services import free_port
from tests.support.wire import ENDPOINT

ADMIN = "/api/v2/admin"
POINTS = f"{ENDPOINT}?api=routing_points"

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@dataclass
class Admin:
    tenant: Tenant
    token: str


@pytest.fixture
def operation(engine: Engine) -> Admin:
    tenant = add_tenant(
        engine,
        "0032",
        [point(101, "Sales line"), point(102, "Support chat")],
        timezone="America/Bogota",
    )
    return Admin(tenant, tenants.add_token(engine, "0032", "ops", scope="admin").secret)


@pytest.fixture
def http(database_url: str, operation: Admin) -> Iterator[httpx.Client]:
    server = LiveServer(make_settings(database_url)).start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client
    server.stop()


def records(count: int, name: str = "Bulk", start: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "rp_id": str(i),
            "rp_name": f"{name} {i}",
            "ivr_active": "yes",
            "chat_active": "no",
            "interaction_active": "yes",
            "crm_active": "no",
            "last_use": "",
        }
        for i in range(start, start + count)
    ]


def test_10000_records_accepted_10001_refused_with_nothing_written(
    http: httpx.Client, operation: Admin, engine: Engine
) -> None:
    accepted = http.post(
        f"{ADMIN}/routing_points/bulk",
        json=records(10_000, start=1000),
        headers=headers(operation.token),
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"] == {"upserted": 10_000, "deleted": 0, "unchanged": 0}
    assert point_store.count_points(engine, "0032") == 10_002
    version = tenants.get_operation(engine, "0032").version
    refused = http.post(
        f"{ADMIN}/routing_points/bulk",
        json=records(10_001, name="Over", start=50_000),
        headers=headers(operation.token),
    )
    assert refused.status_code == 413
    assert refused.json() == {
        "code": 413,
        "error": "REQUEST ENTITY TOO LARGE",
        "msg": "THE UPLOAD HAS 10001 RECORDS: THE LIMIT IS 10000 PER CONSUMPTION",
        "data": None,
    }
    assert point_store.count_points(engine, "0032") == 10_002
    assert tenants.get_operation(engine, "0032").version == version


def test_an_upload_of_what_is_stored_writes_nothing_and_keeps_the_version(
    http: httpx.Client, operation: Admin, engine: Engine
) -> None:
    """Uploading the same records again used to bump the version: every client's ETag
    changed, and each downloaded the whole answer again for nothing."""
    bulk, auth = f"{ADMIN}/routing_points/bulk", headers(operation.token)
    first = http.post(bulk, json=records(3, start=1000), headers=auth)
    assert first.json()["data"] == {"upserted": 3, "deleted": 0, "unchanged": 0}
    version = tenants.get_operation(engine, "0032").version
    again = http.post(bulk, json=records(3, start=1000), headers=auth)
    assert again.json()["data"] == {"upserted": 3, "deleted": 0, "unchanged": 3}
    assert tenants.get_operation(engine, "0032").version == version
    changed = records(3, start=1000)
    changed[1]["crm_active"] = "yes"
    partly = http.post(bulk, json=changed, headers=auth)
    assert partly.json()["data"] == {"upserted": 3, "deleted": 0, "unchanged": 2}
    assert tenants.get_operation(engine, "0032").version == version + 1
    _, row = point_store.get_point(engine, "0032", 1001)
    assert row.crm_active


def test_an_invalid_record_at_index_9999_refuses_all(
    http: httpx.Client, operation: Admin, engine: Engine
) -> None:
    upload = records(10_000, start=1000)
    upload[9_999]["rp_name"] = ""
    response = http.post(
        f"{ADMIN}/routing_points/bulk", json=upload, headers=headers(operation.token)
    )
    assert response.status_code == 400
    assert response.json()["msg"] == (
        "RECORD AT INDEX 9999: RP_NAME: MUST BE TEXT OF 1 TO 255 CHARACTERS"
    )
    assert point_store.count_points(engine, "0032") == 2


def test_replace_deletes_the_points_not_uploaded(
    http: httpx.Client, operation: Admin, engine: Engine
) -> None:
    response = http.post(
        f"{ADMIN}/routing_points/bulk?replace=true",
        json=[{"rp_id": "102", "rp_name": "Kept"}, {"rp_id": "7", "rp_name": "New"}],
        headers=headers(operation.token),
    )
    assert response.json()["data"] == {"upserted": 2, "deleted": 1, "unchanged": 0}
    _, rows = point_store.list_points(engine, "0032")
    assert [(row.rp_id, row.rp_name) for row in rows] == [(7, "New"), (102, "Kept")]


def test_a_repeated_parameter_is_refused_before_anything(
    http: httpx.Client, operation: Admin, engine: Engine
) -> None:
    """`replace=false&replace=true` read the last one and deleted points."""
    _, before = point_store.list_points(engine, "0032")
    response = http.post(
        f"{ADMIN}/routing_points/bulk?replace=false&replace=true",
        json=[{"rp_id": "102", "rp_name": "Kept"}],
        headers=headers(operation.token),
    )
    assert response.status_code == 400
    assert response.json()["msg"].endswith("REPLACE IS GIVEN MORE THAN ONCE")
    assert "ratelimit" not in response.headers  # refused before admission: not charged
    _, after = point_store.list_points(engine, "0032")
    assert after == before


def test_single_point_create_update_delete(
    http: httpx.Client, operation: Admin, engine: Engine
) -> None:
    token = headers(operation.token)
    etag = http.get(POINTS, headers=token).headers["etag"]
    created = http.post(
        f"{ADMIN}/routing_points",
        headers=token,
        json={
            "rp_id": "200",
            "rp_name": "Claims",
            "crm_active": "yes",
            "last_use": "2026-11-20 14:03:11",
        },
    )
    assert created.status_code == 201
    assert created.json()["data"] == [
        {
            "rp_id": "200",
            "rp_name": "Claims",
            "ivr_active": "no",
            "chat_active": "no",
            "interaction_active": "no",
            "crm_active": "yes",
            "last_use": "2026-11-20 14:03:11",
        }
    ]
    # The write bumped the version: the old tag no longer matches.
    changed = http.get(POINTS, headers=headers(operation.token, **{"if-none-match": etag}))
    assert changed.status_code == 200
    assert len(changed.json()["data"]) == 3
    duplicate = http.post(
        f"{ADMIN}/routing_points", headers=token, json={"rp_id": "200", "rp_name": "Again"}
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["msg"] == "ROUTING POINT 200 ALREADY EXISTS"
    updated = http.patch(
        f"{ADMIN}/routing_points/200",
        headers=token,
        json={"ivr_active": "yes", "rp_name": "Claims desk"},
    )
    assert updated.status_code == 200
    assert updated.json()["data"][0]["rp_name"] == "Claims desk"
    assert updated.json()["data"][0]["ivr_active"] == "yes"
    bad = http.patch(f"{ADMIN}/routing_points/200", headers=token, json={"ivr_active": "maybe"})
    assert bad.status_code == 400
    assert bad.json()["msg"] == "IVR_ACTIVE: 'MAYBE' IS NOT YES OR NO"
    # An rp_id in the body is named as the mistake (it said the body was no object).
    moved = http.patch(f"{ADMIN}/routing_points/200", headers=token, json={"rp_id": "201"})
    assert moved.json()["msg"] == "RP_ID CANNOT BE CHANGED: IT IS THE POINT'S ADDRESS IN THE PATH"
    # JSON's null by its name (it said NONE), and a huge value not echoed whole.
    null = http.patch(f"{ADMIN}/routing_points/200", headers=token, json={"ivr_active": None})
    assert null.json()["msg"] == "IVR_ACTIVE: NULL IS NOT YES OR NO"
    huge = http.post(
        f"{ADMIN}/routing_points/bulk", headers=token, json=[{"rp_id": [1] * 5000, "rp_name": "x"}]
    )
    assert huge.status_code == 400
    echoed = "[" + "1," * 18 + "..."
    assert huge.json()["msg"] == f"RECORD AT INDEX 0: RP_ID: {echoed} IS NOT A POSITIVE INTEGER"
    deleted = http.delete(f"{ADMIN}/routing_points/200", headers=token)
    assert deleted.status_code == 200
    missing = http.delete(f"{ADMIN}/routing_points/200", headers=token)
    assert missing.status_code == 404
    assert missing.json()["msg"] == "ROUTING POINT 200 DOES NOT EXIST"
    assert point_store.count_points(engine, "0032") == 2


@pytest.mark.parametrize(
    ("body", "status", "msg"),
    [
        (b"{not json", 400, "THE BODY IS NOT VALID JSON"),
        (b'{"rp_id": "5"}', 400, "RP_NAME: IS REQUIRED"),
        (b'[{"rp_id": "5", "rp_name": "x"}]', 400, "THE BODY MUST BE ONE ROUTING POINT OBJECT"),
        (
            b'{"rp_id": "5", "rp_name": "x", "color": "red"}',
            400,
            "COLOR: IS NOT A ROUTING POINT FIELD",
        ),
    ],
)
def test_bad_bodies_are_clear_400s(
    http: httpx.Client, operation: Admin, body: bytes, status: int, msg: str
) -> None:
    response = http.post(f"{ADMIN}/routing_points", content=body, headers=headers(operation.token))
    assert response.status_code == status
    assert response.json()["msg"] == msg
    assert response.json()["data"] is None


@pytest.mark.dated
def test_events_out_of_order_leave_last_use_at_the_latest(
    http: httpx.Client, operation: Admin, engine: Engine
) -> None:
    token = headers(operation.token)
    events = [
        {"rp_id": "101", "channel": "ivr", "at": "2026-11-20 10:00:00"},
        {"rp_id": "101", "channel": "chat", "at": "2026-11-21 09:30:00"},
        {"rp_id": "101", "channel": "ivr", "at": "2026-11-19 08:00:00"},
        {"rp_id": "999", "channel": "crm", "at": "2026-11-21 09:30:00"},
    ]
    first = http.post(f"{ADMIN}/usage_events", json=events, headers=token)
    assert first.status_code == 200
    assert first.json()["data"] == {
        "recorded": 3,
        "unknown_rp_ids": ["999"],
        "last_use_advanced": 1,
    }
    assert first.json()["msg"] == "3 events were recorded; 1 rp_ids are unknown"
    # They move last_use, which every client sees: on the record, as every admin write.
    logged = audit.entries(engine, "0032")[0]
    assert (logged.action, orjson.loads(logged.detail or "{}")) == (
        "usage.events",
        {"recorded": 3, "unknown_rp_ids": 1, "last_use_advanced": 1},
    )
    etag = http.get(POINTS, headers=token).headers["etag"]
    late = http.post(
        f"{ADMIN}/usage_events",
        headers=token,
        json=[{"rp_id": "101", "channel": "ivr", "at": "2026-11-01T00:00:00Z"}],
    )
    assert late.json()["data"]["last_use_advanced"] == 0
    answer = http.get(POINTS, headers=headers(operation.token, **{"if-none-match": etag}))
    # A late event changes nothing visible: the tag still matches.
    assert answer.status_code == 304
    body = http.get(f"{POINTS}&routing=101", headers=token).json()
    assert body["data"][0]["last_use"] == "2026-11-21 09:30:00"


@pytest.mark.dated
def test_bad_events_refuse_the_batch(http: httpx.Client, operation: Admin) -> None:
    response = http.post(
        f"{ADMIN}/usage_events",
        headers=headers(operation.token),
        json=[
            {"rp_id": "101", "channel": "ivr", "at": "2026-11-20 10:00:00"},
            {"rp_id": "101", "channel": "fax", "at": "2026-11-20 10:00:00"},
        ],
    )
    assert response.status_code == 400
    assert response.json()["msg"].startswith("EVENT AT INDEX 1: CHANNEL: 'FAX' IS NOT ONE OF")


@pytest.mark.dated
def test_the_usage_report(http: httpx.Client, operation: Admin) -> None:
    token = headers(operation.token)
    http.post(
        f"{ADMIN}/usage_events",
        headers=token,
        json=[
            {"rp_id": "101", "channel": "ivr", "at": "2026-11-20 23:59:59"},
            {"rp_id": "101", "channel": "ivr", "at": "2026-11-20 00:00:00"},
            # 04:30 UTC on the 21st is still the 20th in Bogota (UTC-5).
            {"rp_id": "101", "channel": "ivr", "at": "2026-11-21T04:30:00Z"},
            {"rp_id": "101", "channel": "chat", "at": "2026-11-21 00:00:00"},
            {"rp_id": "102", "channel": "crm", "at": "2026-11-25 12:00:00"},
        ],
    )
    report = http.get(
        f"{ADMIN}/usage_report?date_ini=20261120000000&date_end=20261130235959", headers=token
    )
    assert report.status_code == 200
    assert report.json()["data"] == [
        {"day": "2026-11-20", "rp_id": "101", "channel": "ivr", "events": "3"},
        {"day": "2026-11-21", "rp_id": "101", "channel": "chat", "events": "1"},
        {"day": "2026-11-25", "rp_id": "102", "channel": "crm", "events": "1"},
    ]
    only = http.get(
        f"{ADMIN}/usage_report?date_ini=20261120000000&date_end=20261130235959&routing=102",
        headers=token,
    )
    assert [row["rp_id"] for row in only.json()["data"]] == ["102"]


@pytest.mark.dated
@pytest.mark.parametrize(
    ("date_ini", "date_end", "status", "msg"),
    [
        ("20261101000000", "20261202000000", 200, None),
        (
            "20261101000000",
            "20261202000001",
            400,
            "SOME PARAMETERS ARE REQUIRED: THE DATE RANGE EXCEEDS 31 DAYS",
        ),
        (
            "20261130000000",
            "20261101000000",
            400,
            "SOME PARAMETERS ARE REQUIRED: DATE_INI IS AFTER DATE_END",
        ),
        (
            "2026-11-01",
            "20261130000000",
            400,
            "SOME PARAMETERS ARE REQUIRED: DATE_INI IS NOT A DATE IN THE FORM YYYYMMDDHHIISS",
        ),
        (
            "20261101000000",
            "20261345000000",
            400,
            "SOME PARAMETERS ARE REQUIRED: DATE_END IS NOT A DATE IN THE FORM YYYYMMDDHHIISS",
        ),
        ("", "20261130000000", 400, "SOME PARAMETERS ARE REQUIRED: DATE_INI IS REQUIRED"),
    ],
)
def test_the_report_range_limit(
    http: httpx.Client,
    operation: Admin,
    date_ini: str,
    date_end: str,
    status: int,
    msg: str | None,
) -> None:
    response = http.get(
        f"{ADMIN}/usage_report",
        params={"date_ini": date_ini, "date_end": date_end},
        headers=headers(operation.token),
    )
    assert response.status_code == status
    if msg is not None:
        assert response.json()["msg"] == msg


def test_scopes_and_operations(http: httpx.Client, operation: Admin, engine: Engine) -> None:
    other = add_tenant(engine, "0033", [point(555, "Theirs")])
    other_admin = tenants.add_token(engine, "0033", "their ops", scope="admin").secret
    read_only = http.post(
        f"{ADMIN}/routing_points",
        headers=headers(operation.tenant.token),
        json={"rp_id": "9", "rp_name": "x"},
    )
    assert read_only.status_code == 403
    assert read_only.json()["msg"] == "THIS TOKEN IS NOT ALLOWED TO USE THE ADMIN API"
    # The admin token reads too.
    assert http.get(POINTS, headers=headers(operation.token)).status_code == 200
    # An admin token acts on its own operation only: another's rp_id is not found...
    foreign = http.patch(
        f"{ADMIN}/routing_points/555",
        headers=headers(operation.token),
        json={"rp_name": "Hijacked"},
    )
    assert foreign.status_code == 404
    # ...and naming the other operation is refused like a bad token.
    named = http.delete(
        f"{ADMIN}/routing_points/555", headers=headers(operation.token, wolkvox_server="0033")
    )
    assert named.status_code == 403
    assert named.json()["msg"] == "PLEASE VALIDATE TOKEN"
    assert [r.rp_name for r in point_store.list_points(engine, "0033")[1]] == ["Theirs"]
    assert other.token
    assert other_admin


def test_admin_calls_are_admitted_like_any_other(http: httpx.Client, operation: Admin) -> None:
    response = http.get(
        f"{ADMIN}/usage_report?date_ini=20261101000000&date_end=20261102000000",
        headers=headers(operation.token),
    )
    assert (
        response.headers["ratelimit"]
        == '"daily";r=999;t=' + (response.headers["ratelimit"].rsplit("t=", 1)[1])
    )
    anonymous = http.get(f"{ADMIN}/usage_report")
    assert anonymous.status_code == 401


def _post_ignoring_errors(url: str, body: Any, token: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, json=body, headers=headers(token), timeout=30)


def test_a_killed_server_leaves_an_upload_all_or_nothing(
    database_url: str, operation: Admin, engine: Engine
) -> None:
    point_store.upsert_points(engine, "0032", records(10_000, name="Before", start=1000))
    for delay in (0.05, 0.15, 0.3, 0.6):
        server = ServerProcess("serve", "--database", database_url, port=free_port()).wait_ready()
        body = records(10_000, name=f"After{delay}", start=1000)
        upload = threading.Thread(
            target=_post_ignoring_errors,
            args=(f"{server.url}{ADMIN}/routing_points/bulk", body, operation.token),
        )
        upload.start()
        time.sleep(delay)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        upload.join(timeout=30)
        server.kill()
        _, rows = point_store.list_points(engine, "0032")
        renamed = sum(row.rp_name.startswith(f"After{delay} ") for row in rows)
        assert renamed in (0, 10_000), (delay, renamed)
        assert len(rows) == 10_002


def test_numbers_too_long_for_int_are_refused_cleanly(http: httpx.Client, operation: Admin) -> None:
    """Python refuses int() on thousands of digits; each must stay a 4xx, never a 500."""
    huge = "9" * 5000
    token = headers(operation.token)
    read = http.get(f"{POINTS}&routing={huge}", headers=token)
    assert read.status_code == 400
    patch = http.patch(f"{ADMIN}/routing_points/{huge}", json={"crm_active": "yes"}, headers=token)
    assert patch.status_code == 404
    bulk = http.post(
        f"{ADMIN}/routing_points/bulk", json=[{"rp_id": huge, "rp_name": "x"}], headers=token
    )
    assert bulk.status_code == 400
    assert bulk.json()["msg"].startswith("RECORD AT INDEX 0: RP_ID:")
    report = http.get(
        f"{ADMIN}/usage_report?date_ini=20261101000000&date_end=20261102000000&routing={huge}",
        headers=token,
    )
    assert report.status_code == 400
    word = http.delete(f"{ADMIN}/routing_points/abc", headers=token)
    assert word.status_code == 404


def test_reading_the_body_counts_against_the_one_time_limit(
    database_url: str, operation: Admin, engine: Engine
) -> None:
    """1.2 s to send the body, then 1.2 s of work: each fits the 2 s limit, both do not."""
    settings = make_settings(database_url, consumption_timeout_s=2.0, sandbox_latency_ms=1200)
    server = LiveServer(settings).start()

    def slow_body() -> Iterator[bytes]:
        yield b'{"rp_id": "201", '
        time.sleep(1.2)
        yield b'"rp_name": "Late"}'

    try:
        answer = httpx.post(
            f"{server.url}{ADMIN}/routing_points",
            content=slow_body(),
            headers={**headers(operation.token), "content-type": "application/json"},
            timeout=30,
        )
    finally:
        server.stop()
    assert answer.status_code == 504, answer.text
    assert answer.json()["msg"] == "THE CONSUMPTION EXCEEDED THE TIME LIMIT OF 2 SECONDS"
    _, rows = point_store.list_points(engine, "0032")
    assert [row.rp_id for row in rows] == [101, 102]  # cancelled before it wrote
