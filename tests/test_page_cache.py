"""Rendered pages: bounded in bytes, one version per query (the newest), each under its
own version's ETag, and a client's own write seen by its next request."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from routing_points.server.pages import Page, PageCache
from routing_points.store import access, tenants
from routing_points.store import points as point_store
from tests.support.seed import Tenant, add_tenant, point
from tests.support.servers import LiveServer, make_settings, token_lookups_held
from tests.support.wire import ENDPOINT


def page(size: int) -> Page:
    return Page(b"x" * size, 1, None, 1)


def test_a_newer_version_replaces_the_older_page_of_the_same_query() -> None:
    cache = PageCache(max_bytes=1_000)
    cache.put((1, 1, None, 0), page(100))
    cache.put((1, 1, 101, 0), page(100))  # another query of the same version stays
    cache.put((1, 2, None, 0), page(100))
    assert cache.get((1, 1, None, 0)) is None
    assert cache.get((1, 2, None, 0)) is not None
    assert cache.get((1, 1, 101, 0)) is not None
    assert len(cache) == 2


def test_a_render_of_an_older_version_that_ends_last_is_not_kept() -> None:
    cache = PageCache(max_bytes=1_000)
    newer = page(100)
    cache.put((1, 3, None, 0), newer)
    cache.put((1, 2, None, 0), page(100))
    assert cache.get((1, 2, None, 0)) is None
    assert cache.get((1, 3, None, 0)) is newer


def test_the_least_recently_used_pages_go_first_over_the_bound() -> None:
    cache = PageCache(max_bytes=250)
    for operation in (1, 2, 3):
        cache.put((operation, 1, None, 0), page(100))
    assert cache.get((1, 1, None, 0)) is None  # evicted: 300 bytes > 250
    cache.get((2, 1, None, 0))  # 2 is now more recent than 3
    cache.put((4, 1, None, 0), page(100))
    assert cache.get((3, 1, None, 0)) is None
    assert cache.get((2, 1, None, 0)) is not None
    assert cache.get((4, 1, None, 0)) is not None
    cache.put((5, 1, None, 0), page(300))  # bigger than the whole cache: never kept
    assert cache.get((5, 1, None, 0)) is None


def test_gzip_copies_count_within_the_bound() -> None:
    cache = PageCache(max_bytes=350)
    for operation in (1, 2, 3):
        cache.put((operation, 1, None, 0), page(100))
    packed = cache.get((2, 1, None, 0))
    assert packed is not None
    packed.gzipped = b"z" * 60
    cache.grew((2, 1, None, 0), packed)  # 360 bytes: the least recently used goes
    assert len(cache) == 2
    assert cache.get((1, 1, None, 0)) is None
    cache.put((4, 1, None, 0), page(100))  # 360 again: 3 goes, the grown page stays
    assert cache.get((3, 1, None, 0)) is None
    assert cache.get((2, 1, None, 0)) is packed
    alone = PageCache(max_bytes=150)
    big = page(100)
    alone.put((1, 1, None, 0), big)
    big.gzipped = b"z" * 80
    alone.grew((1, 1, None, 0), big)  # over the bound alone: kept, being sent
    assert alone.get((1, 1, None, 0)) is big
    alone.put((1, 2, None, 0), page(100))  # its next version replaces it, and its bytes
    alone.put((2, 1, None, 0), page(40))
    assert len(alone) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_page_read_newer_than_the_tokens_lookup_carries_its_own_etag(
    live: LiveServer, tenant: Tenant, engine: Engine
) -> None:
    url = f"{live.url}{ENDPOINT}?api=routing_points"

    def get(**extra: str) -> httpx.Response:
        return httpx.get(url, headers={"wolkvox-token": tenant.token, **extra}, timeout=30)

    # The token is looked up (another page: the whole one is not rendered yet), then its
    # lookup stays as it was while the points change: the render reads a newer version
    # than the token says.
    assert httpx.get(f"{url}&routing=101", headers={"wolkvox-token": tenant.token}).is_success
    with token_lookups_held(live.app):
        point_store.set_point(engine, "0032", 1000, {"rp_name": "Changed"})
        plain = get(**{"accept-encoding": "identity"})
        packed = get(**{"accept-encoding": "gzip"})
    caught_up = get(**{"accept-encoding": "identity"})
    assert b'"Changed"' in plain.content
    assert packed.content == plain.content  # httpx decoded it
    assert plain.headers["etag"] == caught_up.headers["etag"]
    assert packed.headers["etag"] == caught_up.headers["etag"][:-1] + '-gz"'
    assert caught_up.content == plain.content


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_client_reads_its_own_write_at_once(database_url: str, engine: Engine) -> None:
    add_tenant(engine, "0032", [point(101), point(102)])
    admin = tenants.add_token(engine, "0032", "ops", scope="admin").secret
    server = LiveServer(make_settings(database_url)).start()
    token = {"wolkvox-token": admin}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            before = http.get(f"{ENDPOINT}?api=routing_points", headers=token)
            with token_lookups_held(server.app):
                created = http.post(
                    "/api/v2/admin/routing_points",
                    headers=token,
                    json={"rp_id": "200", "rp_name": "Claims"},
                )
                after = http.get(f"{ENDPOINT}?api=routing_points", headers=token)
    finally:
        server.stop()
    assert created.status_code == 201
    assert after.headers["etag"] != before.headers["etag"]
    assert [record["rp_id"] for record in after.json()["data"]] == ["101", "102", "200"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_zone_changed_after_the_tokens_lookup_is_shown_as_its_version_says(
    live: LiveServer, tenant: Tenant, engine: Engine
) -> None:
    url = f"{live.url}{ENDPOINT}?api=routing_points"
    token = {"wolkvox-token": tenant.token}
    (before,) = httpx.get(f"{url}&routing=101", headers=token).json()["data"]
    # The token's lookup held at Bogota while the operation moves to UTC (a new version).
    with token_lookups_held(live.app):
        access.set_operation(engine, "0032", timezone="UTC")
        during = httpx.get(url, headers=token)
    caught_up = httpx.get(url, headers=token)
    (shown,) = [record for record in during.json()["data"] if record["rp_id"] == "101"]
    shift = datetime.fromisoformat(shown["last_use"]) - datetime.fromisoformat(before["last_use"])
    assert shift == timedelta(hours=5)  # Bogota is UTC-5: the body shows the new zone
    assert during.headers["etag"] == caught_up.headers["etag"]
    assert during.content == caught_up.content


def test_the_etag_follows_the_zone_not_the_name_or_the_licenses(
    live: LiveServer, tenant: Tenant, engine: Engine
) -> None:
    """Only the zone is in the answers (`last_use`): a new name or more licenses would make
    every polling client download the whole answer again for nothing."""
    url = f"{live.url}{ENDPOINT}?api=routing_points"

    def etag() -> str:
        answer = httpx.get(url, headers={"wolkvox-token": tenant.token})
        assert answer.status_code == 200
        return answer.headers["etag"]

    first = etag()
    access.set_operation(engine, "0032", licenses=7, name="Renamed", timezone="America/Bogota")
    kept = etag()
    access.set_operation(engine, "0032", timezone="UTC")
    assert (kept, etag() != first) == (first, True)
