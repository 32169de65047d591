"""The console's sign-in rules and the platform scope, in-process (the browser walk is in
test_console.py): who may sign in, what a platform session may do, what a stale one may not."""

from __future__ import annotations

import re

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from routing_points.server import create_app
from routing_points.store import access, audit, tenants
from routing_points.store import points as point_store
from tests.support.seed import Tenant
from tests.support.servers import asgi_client, make_settings, token_lookups_held
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.anyio


async def _sign_in(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    form = await client.get("/console/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return await client.post("/console/signin", data={"csrf": csrf.group(1), "token": secret})


def _version(page: httpx.Response, token_id: int) -> str:
    """The secret version the page's rotate form of that token names."""
    found = re.search(
        rf'tokens/{token_id}/rotate">.*?name="version" value="([0-9a-f]+)"', page.text
    )
    assert found is not None
    return found.group(1)


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def test_read_tokens_cannot_sign_in_and_the_secret_is_never_echoed(
    database_url: str, tenant: Tenant
) -> None:
    async with asgi_client(create_app(make_settings(database_url))) as client:
        refused = await _sign_in(client, tenant.token)
        forged = await client.post("/console/signin", data={"token": tenant.token})
    assert refused.status_code == 403
    assert "live admin or platform token" in refused.text
    assert tenant.token not in refused.text
    assert forged.status_code == 403


async def test_a_platform_token_sees_every_operation_and_changes_them(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    platform = access.add_platform_token(engine, "ops team")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        signed = await _sign_in(client, platform.secret)
        assert signed.headers["location"] == "/console/operations"
        listing = await client.get("/console/operations")
        assert "0032" in listing.text
        created = await client.post(
            "/console/operations",
            data={
                "csrf": _csrf(listing),
                "server": "0044",
                "name": "New one",
                "licenses": "2",
                "timezone": "Europe/Madrid",
            },
        )
        assert created.status_code == 303
        changed = await client.post(
            "/console/o/0044/settings",
            data={"csrf": _csrf(listing), "licenses": "3", "timezone": "America/Bogota"},
        )
        assert changed.status_code == 303
        bad = await client.post(
            "/console/o/0044/settings", data={"csrf": _csrf(listing), "timezone": "Mars/Base"}
        )
        assert bad.status_code == 400
        # The API never accepts a platform token.
        api = await client.get(
            "/api/v2/information.php",
            params={"api": "token_info"},
            headers={"wolkvox-token": platform.secret},
        )
        assert api.status_code == 403
        access.revoke_platform_token(engine, platform.id)
        after = await client.get("/console/operations")
    operation = tenants.get_operation(engine, "0044")
    assert (operation.licenses, operation.timezone) == (3, "America/Bogota")
    assert after.status_code == 303  # revoking the token ended its session


async def test_an_admin_session_cannot_use_platform_pages(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    boss = tenants.add_token(engine, "0032", "boss", scope="admin")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, boss.secret)
        overview = await client.get("/console/o/0032/")
        operations = await client.get("/console/operations")
        settings = await client.post(
            "/console/o/0032/settings", data={"csrf": _csrf(overview), "licenses": "99"}
        )
    assert overview.status_code == 200
    assert operations.status_code == 404
    assert settings.status_code == 404
    assert tenants.get_operation(engine, "0032").licenses == 1


async def test_rotate_and_expire_a_token_from_the_console(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    boss = tenants.add_token(engine, "0032", "boss", scope="admin")
    info = {"api": "token_info"}
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, boss.secret)
        page = await client.get("/console/o/0032/tokens")
        form = {"csrf": _csrf(page), "version": _version(page, tenant.token_id)}
        rotated = await client.post(f"/console/o/0032/tokens/{tenant.token_id}/rotate", data=form)
        # A reload posts the same form again: refused, nothing rotated (it rotated again,
        # and the secret just shown stopped working).
        again = await client.post(f"/console/o/0032/tokens/{tenant.token_id}/rotate", data=form)
        found = re.search(r'<code id="new-secret">([^<]+)</code>', rotated.text)
        assert found is not None
        new_secret = found.group(1)
        old = await client.get(
            "/api/v2/information.php", params=info, headers={"wolkvox-token": tenant.token}
        )
        new = await client.get(
            "/api/v2/information.php", params=info, headers={"wolkvox-token": new_secret}
        )
        bad = await client.post(
            f"/console/o/0032/tokens/{tenant.token_id}/terms",
            data={"csrf": _csrf(page), "expires": "last tuesday"},
        )
        terms = await client.post(
            f"/console/o/0032/tokens/{tenant.token_id}/terms",
            data={"csrf": _csrf(page), "daily_limit": "50", "expires": "12h"},
        )
        listing = await client.get("/console/o/0032/tokens")
    # The old secret works for the grace period, as with `tokens rotate` (it was cut off).
    assert old.status_code == 200
    assert new.status_code == 200
    assert again.status_code == 400
    assert "has had a new secret since this page was shown: nothing was rotated" in again.text
    assert "The old secret keeps working 60 min more" in rotated.text
    assert bad.status_code == 400
    assert "is not a duration" in bad.text
    assert terms.status_code == 303
    assert new_secret not in listing.text
    view = next(v for v in access.token_views(engine, "0032")[1] if v.id == tenant.token_id)
    assert view.daily_limit == 50
    assert view.expires_at is not None


async def test_ids_too_big_for_the_store_are_not_found_not_a_500(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    secret = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, secret)
        tokens = await client.get("/console/o/0032/tokens")
        huge = "99999999999999999999999"
        revoke = await client.post(
            f"/console/o/0032/tokens/{huge}/revoke", data={"csrf": _csrf(tokens)}
        )
        point = await client.get(f"/console/o/0032/points/{huge}")
    assert tokens.status_code == 200
    assert (revoke.status_code, point.status_code) == (404, 404)


async def test_a_point_page_shows_that_point_exactly(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    """Point 7, named after point 101, is not point 101's page; a missing id is a 404."""
    point_store.create_point(
        engine, tenant.server, {"rp_id": "7", "rp_name": "backup of 101", "ivr_active": "no"}
    )
    admin = tenants.add_token(engine, tenant.server, "admin", scope="admin")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, admin.secret)
        page = await client.get(f"/console/o/{tenant.server}/points/101")
        seven = await client.get(f"/console/o/{tenant.server}/points/7")
        missing = await client.get(f"/console/o/{tenant.server}/points/10")
    assert page.status_code == 200
    assert f'action="/console/o/{tenant.server}/points/101"' in page.text
    assert "backup of 101" not in page.text
    assert f'action="/console/o/{tenant.server}/points/7"' in seven.text
    assert missing.status_code == 404


async def test_the_points_page_shows_at_most_its_share_and_says_so(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    many = [{"rp_id": str(rp_id), "rp_name": f"Many {rp_id}"} for rp_id in range(1000, 1600)]
    point_store.upsert_points(engine, tenant.server, many)
    admin = tenants.add_token(engine, tenant.server, "admin", scope="admin")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, admin.secret)
        page = await client.get(f"/console/o/{tenant.server}/points")
        found = await client.get(f"/console/o/{tenant.server}/points", params={"q": "1599"})
    total = point_store.count_points(engine, tenant.server)
    assert total > 500
    assert f"{total} routing points" in page.text
    assert "Showing the first 500" in page.text
    assert page.text.count('<tr id="point-') == 500
    assert found.text.count('<tr id="point-') == 1
    assert "Showing the first" not in found.text


async def test_an_api_call_right_after_a_console_change_sees_it(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    admin = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    app = create_app(make_settings(database_url))
    query = {"api": "routing_points"}
    token = {"wolkvox-token": tenant.token}
    async with asgi_client(app) as client:
        before = await client.get(ENDPOINT, params=query, headers=token)
        await _sign_in(client, admin)
        page = await client.get("/console/o/0032/points/1000")
        # As when PostgreSQL's notice of the change is late: only the console's own word.
        with token_lookups_held(app):
            changed = await client.post(
                "/console/o/0032/points/1000",
                data={"csrf": _csrf(page), "rp_name": "Night shift B", "ivr_active": "yes"},
            )
            after = await client.get(ENDPOINT, params=query, headers=token)
    assert changed.status_code == 303
    assert after.headers["etag"] != before.headers["etag"]
    names = {record["rp_id"]: record["rp_name"] for record in after.json()["data"]}
    assert names["1000"] == "Night shift B"


@pytest.mark.parametrize("typed", ["²", "①", "1e3", "-4"])
async def test_a_number_a_form_cannot_take_is_a_page_not_a_500(
    database_url: str, engine: Engine, tenant: Tenant, typed: str
) -> None:
    """`str.isdigit()` is true of "²", which `int()` refuses: it was a 500."""
    admin = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, admin)
        page = await client.get("/console/o/0032/tokens")
        refused = await client.post(
            "/console/o/0032/tokens",
            data={"csrf": _csrf(page), "description": "x", "daily_limit": typed},
        )
        biggest = await client.post(
            "/console/o/0032/tokens",
            data={"csrf": _csrf(page), "description": "y", "daily_limit": "1000000000"},
        )
    assert refused.status_code == 400
    assert "daily limit: must be a whole number of at least 1" in refused.text
    assert biggest.status_code == 200, biggest.text  # the store's largest daily limit


async def test_the_largest_rp_id_has_its_console_page(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    largest = 2**63 - 1
    point_store.upsert_points(engine, "0032", [{"rp_id": str(largest), "rp_name": "Last"}])
    admin = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, admin)
        page = await client.get(f"/console/o/0032/points/{largest}")
        past = await client.get(f"/console/o/0032/points/{largest + 1}")
    assert page.status_code == 200
    assert "Last" in page.text
    assert past.status_code == 404


@pytest.mark.parametrize("grace_s", [0, 3600])
async def test_rotating_a_token_ends_the_sessions_it_signed_in(
    database_url: str, engine: Engine, tenant: Tenant, grace_s: int
) -> None:
    """Rotating is how a leaked secret is replaced: whoever signed in with it kept the
    console for up to 8 hours. A grace period is for API clients, not for sessions."""
    boss = tenants.add_token(engine, "0032", "boss", scope="admin")
    other = tenants.add_token(engine, "0032", "other", scope="admin")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, other.secret)
        bystander = httpx.Cookies(client.cookies)
        client.cookies.clear()
        await _sign_in(client, boss.secret)
        before = await client.get("/console/o/0032/tokens")
        new_secret = tenants.rotate_token(engine, boss.id, grace_s).secret
        after = await client.get("/console/o/0032/tokens")
        boss_cookies, client.cookies = client.cookies, bystander
        untouched = await client.get("/console/o/0032/tokens")
        client.cookies = boss_cookies
        with_old = await _sign_in(client, boss.secret)
        with_new = await _sign_in(client, new_secret)
    assert before.status_code == 200
    assert (after.status_code, after.headers["location"]) == (303, "/console/signin")
    assert untouched.status_code == 200  # another token's session goes on
    assert with_old.status_code == 403
    assert with_new.status_code == 303


async def test_rotating_ones_own_token_in_the_console_says_to_sign_in_again(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    boss = tenants.add_token(engine, "0032", "boss", scope="admin")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, boss.secret)
        page = await client.get("/console/o/0032/tokens")
        rotated = await client.post(
            f"/console/o/0032/tokens/{boss.id}/rotate",
            data={"csrf": _csrf(page), "version": _version(page, boss.id)},
        )
        after = await client.get("/console/o/0032/tokens")
    assert rotated.status_code == 200
    assert 'id="new-secret"' in rotated.text
    assert "You signed in with this token: sign in again with its new secret." in rotated.text
    assert after.status_code == 303


@pytest.mark.parametrize(
    ("trusted", "secure"), [("127.0.0.1", True), ("", False), ("10.0.0.0/8", False)]
)
async def test_cookies_are_secure_behind_a_trusted_tls_proxy(
    database_url: str, trusted: str, secure: bool
) -> None:
    """Behind a proxy that ends TLS the app sees http, so its cookies lacked Secure; the
    proxy's X-Forwarded-Proto counts only when the proxy is trusted."""
    settings = make_settings(database_url, trusted_proxies=trusted)
    async with asgi_client(create_app(settings)) as client:
        form = await client.get("/console/signin", headers={"x-forwarded-proto": "https"})
    assert form.status_code == 200
    cookie = form.headers["set-cookie"]
    assert cookie.startswith("rp_console_signin=")
    assert ("; secure" in cookie.lower()) is secure


async def test_an_empty_chart_says_there_is_nothing_yet(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    """A fresh operation's charts were empty frames, which looked broken."""
    admin = tenants.add_token(engine, tenant.server, "admin", scope="admin")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, admin.secret)
        overview = await client.get(f"/console/o/{tenant.server}/")
        usage = await client.get(f"/console/o/{tenant.server}/usage")
    assert 'class="empty">Nothing in these 31 days yet</text>' in overview.text
    assert 'class="empty">Nothing in these 7 days yet</text>' in usage.text


async def test_a_create_form_posted_twice_makes_one_token(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    """A reload of the page that showed a new secret made another live token, whose secret
    nobody had."""
    boss = tenants.add_token(engine, "0032", "boss", scope="admin")
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, boss.secret)
        page = await client.get("/console/o/0032/tokens")
        after = re.search(r'name="after" value="(\d+)"', page.text)
        assert after is not None
        form = {"csrf": _csrf(page), "after": after.group(1), "description": "nightly"}
        created = await client.post("/console/o/0032/tokens", data=form)
        again = await client.post("/console/o/0032/tokens", data=form)
    assert created.status_code == 200
    assert 'id="new-secret"' in created.text
    assert again.status_code == 400
    assert "a token has been created since this page was shown: nothing was created" in again.text
    nightly = [t for t in tenants.list_tokens(engine, "0032") if t.description == "nightly"]
    assert len(nightly) == 1


async def test_a_point_form_writes_and_audits_only_what_changed(
    database_url: str, engine: Engine, tenant: Tenant
) -> None:
    """Any flag other than yes was saved as no ("maybe" included), and every field of the
    form was audited as a change."""
    admin = tenants.add_token(engine, tenant.server, "admin", scope="admin")
    _, before = point_store.get_point(engine, tenant.server, 101)
    flags = {
        name: "yes" if getattr(before, name) else "no"
        for name in ("ivr_active", "chat_active", "interaction_active", "crm_active")
    }
    async with asgi_client(create_app(make_settings(database_url))) as client:
        await _sign_in(client, admin.secret)
        page = await client.get(f"/console/o/{tenant.server}/points/101")
        form = {"csrf": _csrf(page), "rp_name": before.rp_name, **flags}
        odd = await client.post(
            f"/console/o/{tenant.server}/points/101", data={**form, "ivr_active": "maybe"}
        )
        renamed = await client.post(
            f"/console/o/{tenant.server}/points/101", data={**form, "rp_name": "Renamed"}
        )
    assert odd.status_code == 400
    assert "ivr_active: &#39;maybe&#39; is not yes or no" in odd.text
    assert renamed.status_code == 303
    _, after = point_store.get_point(engine, tenant.server, 101)
    assert (after.rp_name, after.ivr_active) == ("Renamed", before.ivr_active)
    logged = [e for e in audit.entries(engine, tenant.server) if e.action == "point.update"]
    assert [orjson.loads(e.detail)["changes"] for e in logged] == [{"rp_name": "Renamed"}]
