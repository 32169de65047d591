"""Expiring tokens, IP allow-lists (and trusted proxies), the audit log, refusal counts:
through the API in-process, the admin API and the CLI."""

from __future__ import annotations

import json
import re
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from routing_points.cli import main
from routing_points.clock import ManualClock
from routing_points.server import create_app
from routing_points.server.addresses import ClientAddress, allowed
from routing_points.store import access, audit, tenants
from routing_points.store import errors as store_errors
from routing_points.store.refusals import refusals_on
from tests.support.seed import Tenant, add_tenant
from tests.support.servers import asgi_client, headers, make_settings
from tests.support.wire import ENDPOINT

BOTH_STORES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
pytestmark = pytest.mark.anyio

OUTSIDE = {
    "code": 403,
    "error": "FORBIDDEN",
    "msg": "THE ADDRESS 127.0.0.1 IS NOT IN THE OPERATION'S IP ALLOW-LIST",
    "data": None,
}


def test_the_client_address_believes_forwarded_for_only_from_trusted_proxies() -> None:
    trusting = ClientAddress("127.0.0.1, 10.0.0.0/8")
    assert trusting("127.0.0.1", "203.0.113.9") == "203.0.113.9"
    # Read from the right: the first hop that is not a trusted proxy is the client.
    assert trusting("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.0.5") == "203.0.113.9"
    assert trusting("192.0.2.1", "203.0.113.9") == "192.0.2.1"
    assert ClientAddress("")("127.0.0.1", "203.0.113.9") == "127.0.0.1"
    assert allowed("203.0.113.9", "203.0.113.0/24 2001:db8::/32")
    assert allowed("2001:db8::1", "203.0.113.0/24 2001:db8::/32")
    assert not allowed("198.51.100.1", "203.0.113.0/24")
    assert allowed("anything", "")


@BOTH_STORES
async def test_an_expired_token_is_refused_like_a_revoked_one(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    clock = ManualClock(time.time())
    expiring = tenants.add_token(engine, "0032", "short-lived", expires_at=int(clock()) + 60)
    app = create_app(make_settings(database_url), clock=clock)
    async with asgi_client(app) as client:
        params = {"api": "routing_points"}
        assert (
            await client.get(ENDPOINT, params=params, headers=headers(expiring.secret))
        ).status_code == 200
        clock.advance(61)
        refused = await client.get(ENDPOINT, params=params, headers=headers(expiring.secret))
    assert refused.status_code == 403
    assert refused.json()["msg"] == "PLEASE VALIDATE TOKEN"


@BOTH_STORES
async def test_a_call_from_outside_the_allow_list_is_refused_and_costs_nothing(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    access.add_network(engine, "0032", "10.0.0.0/8")
    app = create_app(make_settings(database_url))
    async with asgi_client(app) as client:
        refused = await client.get(
            ENDPOINT, params={"api": "routing_points"}, headers=headers(tenant.token)
        )
        await app.state.services.tallies.flush()
        access.add_network(engine, "0032", "127.0.0.1")
        info = await client.get(
            ENDPOINT, params={"api": "token_info"}, headers=headers(tenant.token)
        )
    assert refused.status_code == 403
    assert refused.json() == OUTSIDE
    assert info.json()["data"][0]["token_use_today"] == "1"  # token_info alone
    operation = tenants.get_operation(engine, "0032")
    counted = {
        kind: count
        for day in {
            time.strftime("%Y-%m-%d", time.gmtime(time.time() + s)) for s in (-86400, 0, 86400)
        }
        for kind, count in refusals_on(engine, operation.id, day).items()
    }
    assert counted == {"address": 1}


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    access.add_network(engine, "0032", "203.0.113.0/24")
    forwarded = headers(tenant.token, **{"x-forwarded-for": "203.0.113.7"})
    params = {"api": "routing_points"}
    async with asgi_client(create_app(make_settings(database_url))) as client:
        ignored = await client.get(ENDPOINT, params=params, headers=forwarded)
    trusted = make_settings(database_url, trusted_proxies="127.0.0.0/8")
    async with asgi_client(create_app(trusted)) as client:
        believed = await client.get(ENDPOINT, params=params, headers=forwarded)
    assert ignored.status_code == 403
    assert believed.status_code == 200


def test_the_allow_list_holds_ten_entries_per_license(engine: Engine, tenant: Tenant) -> None:
    for index in range(10):
        access.add_network(engine, "0032", f"192.0.2.{index}")
    with pytest.raises(store_errors.Invalid, match="10 entries"):
        access.add_network(engine, "0032", "192.0.2.200")
    with pytest.raises(store_errors.Invalid, match="not an IP address"):
        access.add_network(engine, "0032", "not-a-network")


async def test_budget_refusals_are_counted_where_they_are_decided(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    app = create_app(make_settings(database_url, daily_calls_per_license=1))
    params = {"api": "routing_points"}
    async with asgi_client(app) as client:
        first = await client.get(ENDPOINT, params=params, headers=headers(tenant.token))
        second = await client.get(ENDPOINT, params=params, headers=headers(tenant.token))
        await app.state.services.tallies.flush()
    assert (first.status_code, second.status_code) == (200, 403)
    operation = tenants.get_operation(engine, "0032")
    days = {time.strftime("%Y-%m-%d", time.gmtime(time.time() + s)) for s in (-86400, 0, 86400)}
    counted: dict[str, int] = {}
    for day in days:
        counted.update(refusals_on(engine, operation.id, day))
    assert counted == {"budget": 1}


@BOTH_STORES
async def test_the_admin_api_manages_tokens_allow_list_and_reads_the_audit(
    database_url: str, engine: Engine
) -> None:
    add_tenant(engine, "0032")
    boss = tenants.add_token(engine, "0032", "boss", scope="admin")
    auth = headers(boss.secret)
    async with asgi_client(create_app(make_settings(database_url))) as client:
        created = await client.post(
            "/api/v2/admin/tokens", json={"description": "BI", "expires": "30d"}, headers=auth
        )
        secret = created.json()["data"][0]["secret"]
        works = await client.get(ENDPOINT, params={"api": "token_info"}, headers=headers(secret))
        bad = await client.post("/api/v2/admin/tokens", json={"expires": "soon"}, headers=auth)
        added = await client.post(
            "/api/v2/admin/allowlist", json={"network": "127.0.0.0/8"}, headers=auth
        )
        listed = await client.get("/api/v2/admin/allowlist", headers=auth)
        removed = await client.delete(
            "/api/v2/admin/allowlist", params={"network": "127.0.0.0/8"}, headers=auth
        )
        tokens = await client.get("/api/v2/admin/tokens", headers=auth)
        log = await client.get("/api/v2/admin/audit", headers=auth)
        # "²" is a digit to str.isdigit() but not to int(): it was a 500.
        odd_limits = [
            await client.get("/api/v2/admin/audit", params={"limit": limit}, headers=auth)
            for limit in ("²", "①", "9" * 5000, "0")
        ]
    assert created.status_code == 201
    assert created.json()["data"][0]["expires_at"].endswith("Z")
    assert works.status_code == 200
    assert bad.status_code == 400
    assert "EXPIRES" in bad.json()["msg"]
    assert added.status_code == 201
    assert listed.json()["data"] == ["127.0.0.0/8"]
    assert removed.status_code == 200
    assert secret not in tokens.text
    assert [t["description"] for t in tokens.json()["data"]][-1] == "BI"
    actions = [entry["action"] for entry in log.json()["data"]]
    assert actions == ["allowlist.remove", "allowlist.add", "token.create"]
    assert {entry["actor"] for entry in log.json()["data"]} == {f"api:token {boss.id}"}
    assert secret not in log.text
    assert [answer.status_code for answer in odd_limits] == [400] * 4
    assert {answer.json()["msg"] for answer in odd_limits} == {
        "SOME PARAMETERS ARE REQUIRED: LIMIT MUST BE AN INTEGER FROM 1 TO 1000"
    }


def test_the_cli_adds_expiring_and_platform_tokens_and_prints_the_audit(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, [*args, "--database", database_url], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = run("tokens", "add", "0032", "--expires", "2w")
    assert code == 0
    code, _, err = run("tokens", "add", "0032", "--expires", "2000-01-01")
    assert code == 1
    assert err.strip().splitlines() == ["Error: expires: '2000-01-01' is in the past"]
    code, out, _ = run("tokens", "add", "--scope", "platform", "--description", "ops")
    assert code == 0
    assert out.startswith("platform token 1 created")
    code, _, err = run("tokens", "add", "--scope", "platform", "0032")
    assert code == 2
    # An empty list says so on stderr (it printed nothing), and stdout stays the list.
    empty = "operation 0032 has no allow-list: every address may call\n"
    assert run("allowlist", "list", "0032") == (0, "", empty)
    assert run("allowlist", "add", "0032", "198.51.100.0/24")[0] == 0
    assert run("allowlist", "list", "0032") == (0, "198.51.100.0/24\n", "")
    assert run("operations", "set", "0032", "--licenses", "2")[0] == 0
    code, out, _ = run("audit", "--server", "0032", "--format", "json")
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["action"] for e in entries] == ["operation.update", "allowlist.add", "token.create"]
    assert entries[-1]["detail"]["description"] == ""  # said, as every other term
    assert isinstance(entries[-1]["detail"]["expires_at"], int)  # JSON: for machines
    # The table is for people: the expiry as a UTC date and time (it was epoch seconds).
    code, out, _ = run("audit", "--server", "0032")
    assert re.search(r'"expires_at":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"', out), out
    assert all(e["actor"].startswith("cli:") and e["address"] == "local" for e in entries)
    assert [e.action for e in audit.entries(engine, None)][-1] == "token.create"
