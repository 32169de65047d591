"""Mirror mode against a second server of ours as the upstream, over real HTTP.

The upstream's own usage counters (what it charged the mirror's token) are the proof that
local consumers cost it nothing beyond the mirror's schedule.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing_points.clock import ManualClock
from routing_points.store import tenants
from tests.support.browser import chromium
from tests.support.mirroring import (
    METRICS_TOKEN,
    PATIENCE_S,
    UPSTREAM,
    Upstream,
    data,
    running_mirror,
    start_upstream,
    upstream_data,
    wait_until,
)
from tests.support.seed import add_tenant, point
from tests.support.services import RedisNamespace
from tests.support.wire import ENDPOINT

SHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def local_store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[str, dict[str, Any]]:
    """The mirror's own store: embedded SQLite, or PostgreSQL with the limits in Redis."""
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'mirror.db'}", {}
    url = str(request.getfixturevalue("postgres_url"))
    namespace: RedisNamespace = request.getfixturevalue("redis_namespace")
    return url, namespace.settings()


def test_mirror_serves_the_upstream_copy_with_its_freshness(
    upstream: Upstream, local_store: tuple[str, dict[str, Any]]
) -> None:
    url, extra = local_store
    with running_mirror(url, upstream, settings=extra) as local:
        wait_until(local.synced, "the first sync")
        response = local.get()
        assert data(response) == upstream_data(upstream)
        assert int(response.headers["age"]) >= 0
        assert response.headers["x-mirror-synced-at"].endswith("Z")
        assert "x-mirror-stale" not in response.headers
        # The local operation's own limits and ETag: a 304 for the local consumer.
        assert response.headers["ratelimit-policy"].startswith('"daily";q=1000000')
        again = local.get(**{"if-none-match": response.headers["etag"]})
        assert again.status_code == 304
        assert "age" in again.headers
        ready = httpx.get(local.server.url + "/readyz").json()
        assert ready["code"] == 200
        assert ready["data"]["mirror"]["status"] == "ok"
        assert ready["data"]["mirror"]["records"] == 3
        metrics = httpx.get(
            local.server.url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
        ).text
        assert 'routing_points_mirror_lag_seconds{upstream="0032"}' in metrics
        assert 'routing_points_mirror_up{upstream="0032"} 1.0' in metrics


def test_changes_and_deletions_arrive_and_the_local_etag_moves_only_with_them(
    upstream: Upstream, tmp_path: Path
) -> None:
    with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
        wait_until(local.synced, "the first sync")
        first = local.get()
        etag = first.headers["etag"]
        # Unchanged upstream: the mirror's polls are 304s, free, and change nothing here.
        charged = upstream.charges()
        wait_until(lambda: local.requests("304") >= 3, "three unchanged syncs")
        assert upstream.charges() == charged
        assert local.get().headers["etag"] == etag
        upstream.replace(
            [point(101, "Sales line renamed", last_use="2026-11-21 08:00:00"), point(2000)]
        )
        wait_until(lambda: local.get().headers["etag"] != etag, "the change to arrive")
        assert data(local.get()) == upstream_data(upstream)
        assert [record["rp_id"] for record in data(local.get())] == ["101", "2000"]


def test_fifty_consumers_cost_the_upstream_only_the_mirrors_schedule(
    upstream: Upstream, tmp_path: Path
) -> None:
    """50 consumers polling every second: the upstream charges exactly the mirror's syncs."""
    with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
        wait_until(local.synced, "the first sync")
        stop = threading.Event()
        answers: list[int] = []

        # Each consumer has a token of its own (the local limits allow 2 requests per token).
        tokens = [
            tenants.add_token(local.engine, UPSTREAM, f"consumer {n}").secret for n in range(50)
        ]

        async def consumer(token: str) -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                while not stop.is_set():
                    response = await http.get(local.url, headers={"wolkvox-token": token})
                    answers.append(response.status_code)
                    await asyncio.sleep(1)

        async def consumers() -> None:
            await asyncio.gather(*(consumer(token) for token in tokens))

        thread = threading.Thread(target=asyncio.run, args=(consumers(),))
        started = time.monotonic()
        thread.start()
        for version in range(3):
            upstream.replace([point(101, f"Sales line v{version}"), point(102)])
            wait_until(
                lambda v=version: data(local.get())[0]["rp_name"] == f"Sales line v{v}",
                f"version {version}",
            )
        wait_until(lambda: len(answers) >= 200, "200 consumer answers")
        stop.set()
        thread.join()
        elapsed = time.monotonic() - started
        assert set(answers) == {200}
        # Every charge is one of the mirror's own requests (the 304s are free upstream)...
        assert upstream.charges() == local.requests("200")
        # ...on its schedule: one sync a second at most, whatever the consumers did.
        assert local.requests() <= elapsed / 1.0 + 3, (local.requests(), elapsed)
        assert local.requests("200") >= 4  # the first sync and three changes


def test_continuations_are_followed_and_no_consumer_sees_half_a_sync(tmp_path: Path) -> None:
    set_a = [point(rp_id, f"A {rp_id}") for rp_id in range(1, 11)]
    set_b = [point(rp_id, f"B {rp_id}") for rp_id in range(1, 8)]
    # 4 records an answer upstream: every sync follows 2 continuation links. A budget that
    # keeps the schedule at 1 s despite the 4 requests a sync takes.
    upstream = start_upstream(
        tmp_path, set_a, max_records_per_response=4, daily_calls_per_license=10_000
    )
    stop = threading.Event()

    def flip() -> None:
        sets = [set_b, set_a]
        while not stop.wait(1.0):
            upstream.replace(sets[0])
            sets.reverse()

    try:
        with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
            wait_until(local.synced, "the first sync")
            assert data(local.get()) == set_a
            flipper = threading.Thread(target=flip)
            flipper.start()
            seen: set[str] = set()
            reads = 0
            try:
                deadline = time.monotonic() + PATIENCE_S
                while seen != {"A", "B"} or reads < 100:
                    assert time.monotonic() < deadline, f"seen {seen} in {reads} reads"
                    records = data(local.get())
                    kinds = {record["rp_name"][0] for record in records}
                    assert records in (set_a, set_b), f"a half-applied sync: {kinds}"
                    seen |= kinds
                    reads += 1
            finally:
                stop.set()
                flipper.join()
    finally:
        upstream.server.stop()
        upstream.engine.dispose()


def test_a_failing_upstream_leaves_the_last_good_copy_served_and_says_so(
    upstream: Upstream, tmp_path: Path
) -> None:
    with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
        wait_until(local.synced, "the first sync")
        good = data(local.get())
        upstream.server.stop()
        wait_until(lambda: "x-mirror-stale" in local.get().headers, "the stale header")
        response = local.get()
        assert data(response) == good
        assert response.headers["x-mirror-stale"] == "upstream-unreachable"
        ready = httpx.get(local.server.url + "/readyz").json()
        assert ready["code"] == 200  # the last good copy is still served
        assert ready["data"]["mirror"]["status"] == "upstream-unreachable"
        assert ready["data"]["mirror"]["last_error"].startswith("TransportError")
        upstream.server.start()
        wait_until(lambda: "x-mirror-stale" not in local.get().headers, "the recovery")


def test_a_revoked_upstream_token_halts_the_mirror_loudly(
    upstream: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
        wait_until(local.synced, "the first sync")
        good = data(local.get())
        tenants.revoke_token(upstream.engine, upstream.tenant.token_id)
        with caplog.at_level(logging.ERROR, logger="routing_points.mirror"):
            wait_until(lambda: local.mirror.state.halted, "the mirror to halt")
        assert "refused the mirror's token" in caplog.text
        assert local.requests("403") == 1
        response = local.get()
        assert data(response) == good
        assert response.headers["x-mirror-stale"] == "upstream-token-refused"
        ready = httpx.get(local.server.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["data"]["mirror"]["status"] == "halted"
        # Not retried: three more intervals pass without a request.
        sent = local.requests()
        time.sleep(3)
        assert local.requests() == sent


def test_sandbox_latency_and_failures_upstream(
    tmp_path: Path, local_store: tuple[str, dict[str, Any]]
) -> None:
    """Latency and failures upstream: the mirror still converges on the exact copy."""
    records = [point(rp_id) for rp_id in range(1, 10)]
    upstream = start_upstream(
        tmp_path,
        records,
        max_records_per_response=4,
        sandbox_latency_ms=50,
        sandbox_failure_rate=0.3,
        # One request at a time upstream: a second one at once would be refused 403.
        max_in_flight_per_token=1,
    )
    url, extra = local_store
    try:
        with running_mirror(url, upstream, settings=extra) as local:
            wait_until(local.synced, "a sync to get through")
            assert data(local.get()) == records
            upstream.replace([*records[:5], point(50)])
            wait_until(lambda: len(data(local.get())) == 6, "the change to get through")
            assert data(local.get()) == [*records[:5], point(50)]
            # The faults are random (30% of calls): the mirror keeps polling until one has
            # shown, however few calls the sync above needed (0.7^8 = 6% of runs had none).
            wait_until(lambda: local.requests("503") > 0, "a fault upstream")
            assert data(local.get()) == [*records[:5], point(50)]
            # Whatever the faults, the upstream charged no more than the mirror sent (304s
            # are free), and at least every answer the mirror got.
            charged = upstream.charges()
            assert local.requests("200") <= charged <= local.mirror.transport.sent
            assert local.requests("403") == 0  # never two requests at once
    finally:
        upstream.server.stop()
        upstream.engine.dispose()


def test_admin_writes_are_refused_on_a_mirror(upstream: Upstream, tmp_path: Path) -> None:
    with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
        admin = tenants.add_token(local.engine, UPSTREAM, "ops", scope="admin").secret

        def write(*token: str) -> httpx.Response:
            return httpx.post(
                local.server.url + "/api/v2/admin/routing_points",
                headers={"wolkvox-token": token[0]} if token else {},
                json={"rp_id": "5", "rp_name": "x"},
            )

        refused = write(admin)
        # Only a valid admin token learns that this server mirrors, and which operation.
        strangers = [write(), write("wrong"), write(local.token)]
        # Nor does its console change a point (the next sync would undo it).
        wait_until(local.synced, "the first sync")
        with httpx.Client(base_url=local.server.url) as browser:
            form = browser.get("/console/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            browser.post("/console/signin", data={"csrf": csrf.group(1), "token": admin})
            point_page = browser.get("/console/o/0032/points/101")
            session_csrf = re.search(r'name="csrf" value="([^"]+)"', point_page.text)
            assert session_csrf is not None
            edited = browser.post(
                "/console/o/0032/points/101",
                data={"csrf": session_csrf.group(1), "rp_name": "edited on the mirror"},
            )
        # What a person sees: no control that would only be refused. The points page says
        # where to write instead of offering an import, and a point opens to be read.
        with chromium() as browser_page:
            page = browser_page.new_page(viewport={"width": 1280, "height": 900})
            page.goto(local.server.url + "/console/signin")
            page.keyboard.type(admin)
            page.keyboard.press("Enter")
            page.wait_for_url("**/console/o/0032/")
            page.goto(local.server.url + "/console/o/0032/points")
            points_note = page.locator("#read-only").inner_text()
            import_forms = page.get_by_role("button", name="Import").count()
            SHOTS.mkdir(exist_ok=True)
            page.screenshot(path=str(SHOTS / "mirror-points.png"), full_page=True)
            page.get_by_role("link", name="View routing point 101").click()
            page.wait_for_url("**/points/101")
            point_note = page.locator("#read-only").inner_text()
            save_buttons = page.get_by_role("button", name="Save").count()
            name_editable = page.get_by_label("Name").is_editable()
            page.screenshot(path=str(SHOTS / "mirror-point.png"))
        # Its tokens are its own: an admin makes them here, not upstream.
        token = httpx.post(
            local.server.url + "/api/v2/admin/tokens",
            headers={"wolkvox-token": admin},
            json={"description": "local consumer"},
        )
    assert token.status_code == 201
    assert point_page.status_code == 200
    assert edited.status_code == 403
    assert "This server mirrors operation 0032: write to its upstream." in edited.text
    reason = "This server mirrors operation 0032: write to its upstream."
    sync = "Changes made there reach this server with each sync."
    assert points_note == point_note == f"{reason} {sync}"
    assert (import_forms, save_buttons, name_editable) == (0, 0, False)
    assert refused.status_code == 403
    assert refused.json() == {
        "code": 403,
        "error": "FORBIDDEN",
        "msg": "THIS SERVER MIRRORS OPERATION 0032: WRITE TO ITS UPSTREAM",
        "data": None,
    }
    assert [answer.status_code for answer in strangers] == [401, 403, 403]
    assert not any("MIRROR" in answer.text for answer in strangers)


def test_a_small_budget_share_slows_the_mirror_down(tmp_path: Path) -> None:
    # An upstream budget of 10 a day, 30% of it for the mirror: one sync every 8 hours.
    upstream = start_upstream(tmp_path, [point(1)], licenses=1, daily_calls_per_license=10)
    try:
        database = f"sqlite:///{tmp_path / 'mirror.db'}"
        with running_mirror(database, upstream, budget_share=0.3) as local:
            wait_until(local.synced, "the first sync")
            wait_until(lambda: local.mirror.state.next_sync_at is not None, "the schedule")
            assert local.mirror.schedule.interval().seconds == 28_800
            next_sync_at = local.mirror.state.next_sync_at
            assert next_sync_at is not None
            assert next_sync_at - time.time() > 28_000
            assert upstream.charges() == 1
    finally:
        upstream.server.stop()
        upstream.engine.dispose()


def test_without_ratelimit_headers_the_budget_comes_from_token_info_once(
    tmp_path: Path,
) -> None:
    # No limits upstream: no RateLimit headers, as from a vendor that sends none.
    upstream = start_upstream(tmp_path, [point(1)], licenses=200, limits_enabled=False)
    try:
        with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
            wait_until(lambda: local.mirror.budget.daily_budget is not None, "token_info")
            assert local.mirror.budget.daily_budget == 200_000
            wait_until(lambda: local.requests("304") >= 2, "two more syncs")
            assert local.requests("200") == 2  # the first sync and one token_info, no more
    finally:
        upstream.server.stop()
        upstream.engine.dispose()


def test_a_spent_upstream_budget_is_waited_out_not_hammered(tmp_path: Path) -> None:
    # Upstream noon, UTC: its budget resets in 12 hours, whatever the time of this test.
    noon = ManualClock(1_795_780_800.0)  # 2026-11-27 12:00:00 UTC
    upstream = start_upstream(
        tmp_path, [point(1)], licenses=1, clock=noon, daily_calls_per_license=1
    )
    other = add_tenant(upstream.engine, UPSTREAM)
    spent = httpx.get(
        upstream.url + ENDPOINT,
        params={"api": "token_info"},
        headers={"wolkvox-token": other.token},
    )
    assert spent.status_code == 200
    try:
        with running_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", upstream) as local:
            wait_until(lambda: local.mirror.state.failures == 1, "the refused sync")
            response = local.get()
            assert response.headers["x-mirror-stale"] == "never-synced"
            ready = httpx.get(local.server.url + "/readyz").json()
            assert ready["data"]["mirror"]["status"] == "upstream-budget-spent"
            next_sync_at = local.mirror.state.next_sync_at
            assert next_sync_at is not None
            assert next_sync_at - time.time() > 11 * 3600
            assert local.requests() == 1
    finally:
        upstream.server.stop()
        upstream.engine.dispose()
