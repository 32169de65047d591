"""The console as a person uses it: a real chromium against a real server process.

One walk through every page per store (embedded SQLite; PostgreSQL + Redis with two
workers), checking what the person sees and what the API answers afterwards. Screenshots
of each page, at 1280 and 390 px wide, go to tests/screenshots/ (kept out of git).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium
from tests.support.processes import ServerProcess, cli, wait_for_port
from tests.support.services import RedisNamespace, free_port
from tests.support.wire import ENDPOINT

SHOTS = Path(__file__).parent / "screenshots"
WIDTHS = {"wide": (1280, 900), "narrow": (390, 844)}
CSV_HEADER = "rp_id,rp_name,ivr_active,chat_active,interaction_active,crm_active,last_use\n"


def _secret(*args: str, database: str) -> str:
    done = cli("tokens", "add", *args, "--database", database)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


@pytest.fixture(params=["sqlite", "postgresql"])
def console_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A served store with operations 0032 and 0033: (url, database, secrets)."""
    env = {"ROUTING_POINTS_ACCESS_LOG": "false"}
    extra: list[str] = []
    if request.param == "postgresql":
        database = str(request.getfixturevalue("postgres_url"))
        redis: RedisNamespace = request.getfixturevalue("redis_namespace")
        env["ROUTING_POINTS_REDIS_KEY_PREFIX"] = redis.prefix
        extra = ["--redis", redis.url, "--workers", "2"]
    else:
        database = f"sqlite:///{tmp_path / 'console.db'}"
    assert cli("migrate", "--database", database).returncode == 0
    for server in ("0032", "0033"):
        done = cli(
            "operations", "add", server, "--name", f"Operation {server}", "--licenses", "1",
            "--database", database,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    points = tmp_path / "points.csv"
    points.write_text(CSV_HEADER + "101,Sales line,yes,no,yes,no,\n102,Support,no,yes,no,no,\n")
    assert cli("points", "import", "0032", str(points), "--database", database).returncode == 0
    secrets = {
        "admin": _secret("0032", "--scope", "admin", database=database),
        "read": _secret("0032", "--description", "poller", database=database),
        "other": _secret("0033", "--scope", "admin", database=database),
    }
    server = ServerProcess("serve", "--database", database, *extra, port=free_port(), env=env)
    try:
        wait_for_port(server.port, server.process, timeout=90)  # two workers on a busy machine
        yield {"url": server.url, "database": database, "secrets": secrets, "store": request.param}
    finally:
        server.stop()


def _api(url: str, secret: str, **params: str) -> httpx.Response:
    query = {"api": "routing_points", **params}
    return httpx.get(f"{url}{ENDPOINT}", params=query, headers={"wolkvox-token": secret})


def _shoot(page: Any, store: str, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"{store}-{name}-{width_name}.png"), full_page=True)
        # Wide tables scroll inside their frame; the page itself never scrolls sideways.
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= width, f"{name} is {page_width} px wide at {width} px"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_an_operator_manages_the_operation_in_a_browser(
    console_server: dict[str, Any], tmp_path: Path
) -> None:
    url, secrets, store = console_server["url"], console_server["secrets"], console_server["store"]
    o = f"{url}/console/o/0032"
    for _ in range(3):  # the day's calls the chart must show
        assert _api(url, secrets["read"]).status_code == 200

    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()

        # Sign in by keyboard alone: the token field has the focus, Enter submits.
        page.goto(f"{url}/console/")
        assert page.url.endswith("/console/signin")
        _shoot(page, store, "signin")
        page.keyboard.type(secrets["admin"])
        page.keyboard.press("Enter")
        page.wait_for_url(f"{o}/")
        assert secrets["admin"] not in page.content()
        cookie = next(c for c in context.cookies() if c["name"] == "rp_console")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert cookie["expires"] > 0

        # Overview: the budget gauge, and today's bar with the day's 3 calls.
        assert page.locator("#budget-used").inner_text() == "3"
        assert page.locator("#budget-left").inner_text() == "997"
        assert page.locator("svg.gauge").is_visible()
        bars = page.locator("figure.chart rect.bar")
        assert bars.count() == 1
        assert bars.last.get_attribute("data-value") == "3"
        assert "h" in page.locator("#reset-in").inner_text()
        _shoot(page, store, "overview")

        # Tokens: the secret is shown once, works, and is gone on the next visit.
        page.goto(f"{o}/tokens")
        # A refused form comes back as typed (it came back empty), and a number too large
        # for the store is called that (it was told to be a whole number).
        page.get_by_label("Description").fill("BI pipeline")
        page.get_by_label("Daily limit").last.fill("99999999999999999999")
        page.get_by_role("button", name="Create the token").click()
        assert "daily limit: 99999999999999999999 is far too large" in page.content()
        assert page.get_by_label("Description").input_value() == "BI pipeline"
        page.get_by_label("Daily limit").last.fill("")
        page.get_by_label("Expires", exact=False).last.fill("30d")
        page.get_by_role("button", name="Create the token").click()
        secret = page.locator("#new-secret").inner_text().strip()
        _shoot(page, store, "token-created")
        assert _api(url, secret).status_code == 200
        page.goto(f"{o}/tokens")
        assert secret not in page.content()
        row = page.locator("tbody tr", has_text="BI pipeline")
        assert "no limit" in row.inner_text()
        assert "no expiry" not in row.inner_text()
        _shoot(page, store, "tokens")
        row.get_by_role("button", name=re.compile("^Revoke token")).click()
        page.wait_for_url(f"{o}/tokens")
        assert page.locator("tbody tr", has_text="BI pipeline").get_attribute("data-state") == (
            "revoked"
        )
        refused = _api(url, secret)
        assert refused.status_code == 403
        assert refused.json()["msg"] == "PLEASE VALIDATE TOKEN"

        # Routing points: edit one, and the API answers the change.
        page.goto(f"{o}/points")
        _shoot(page, store, "points")
        page.get_by_role("link", name="Edit routing point 101").click()
        page.get_by_label("ivr_active").select_option("no")
        page.get_by_label("Name").fill("Sales line (closed)")
        _shoot(page, store, "point-edit")
        page.get_by_role("button", name="Save").click()
        # Redirected with what was done, so that reloading the page saves nothing again.
        page.wait_for_url(f"{o}/points?saved=101")
        assert page.get_by_role("status").inner_text() == "Routing point 101 was saved."
        answer = _api(url, secrets["read"], routing="101").json()["data"][0]
        assert answer["ivr_active"] == "no"
        assert answer["rp_name"] == "Sales line (closed)"

        # Import: a bad row is named by its line, and nothing at all is written.
        bad = tmp_path / "bad.csv"
        bad.write_text(CSV_HEADER + "300,New point,yes,no,no,no,\n301,Broken,maybe,no,no,no,\n")
        page.get_by_label("CSV or JSON file").set_input_files(str(bad))
        page.get_by_role("button", name="Import").click()
        problems = page.locator("#import-problems").inner_text()
        assert "line 3" in problems
        assert "ivr_active" in problems
        _shoot(page, store, "points-import-refused")
        assert _api(url, secrets["read"], routing="300").json()["data"] in ([], None)
        # A mistyped header is the header's mistake, named once (it was named on every line).
        typo = tmp_path / "typo.csv"
        typo.write_text("rp_id,rp_nam\n300,New point\n301,Other\n")
        page.get_by_label("CSV or JSON file").set_input_files(str(typo))
        page.get_by_role("button", name="Import").click()
        assert page.locator("#import-problems li").all_inner_texts() == [
            "typo.csv: line 1: 'rp_nam' is not a routing point field"
        ]
        # An upload holds at most 10,000 records (L4), as the admin API's does; a field past
        # what the csv module reads is a problem on its line (both were let through: the
        # first imported 10,001 points, the second was a 500).
        for name, content, said in (
            (
                "many.csv",
                CSV_HEADER + "".join(f"{i},P{i},no,no,no,no,\n" for i in range(1, 10_002)),
                "many.csv: 10,001 records: an upload takes at most 10,000 (split the file, "
                "or import it with routing-points points import)",
            ),
            (
                "long.csv",
                "rp_id,rp_name\n300," + "x" * 200_000 + "\n",
                "long.csv: line 2: a field is longer than 131,072 characters",
            ),
            # As points import says it (the console blamed the header row).
            ("empty.csv", "\n", "empty.csv: holds no records"),
        ):
            upload = tmp_path / name
            upload.write_text(content)
            page.get_by_label("CSV or JSON file").set_input_files(str(upload))
            page.get_by_role("button", name="Import").click()
            assert page.locator("#import-problems li").all_inner_texts() == [said]
        assert _api(url, secrets["read"], routing="1").json()["data"] in ([], None)
        # JSON too, as points import reads it (the console took CSV only).
        upload = tmp_path / "points.json"
        upload.write_text('[{"rp_id": "102", "rp_name": "Support desk"}]')
        page.get_by_label("CSV or JSON file").set_input_files(str(upload))
        page.get_by_role("button", name="Import").click()
        page.wait_for_url(f"{o}/points?imported=1&unchanged=0")
        assert "Support desk" in page.locator("#point-102").inner_text()

        # Import: only what changes is written; the same file again writes nothing, and a
        # client's ETag still holds (it used to change: every client downloaded again).
        good = tmp_path / "good.csv"
        good.write_text(
            CSV_HEADER + "101,Sales line (closed),no,no,yes,no,\n102,Support,no,yes,no,yes,\n"
        )
        page.get_by_label("CSV or JSON file").set_input_files(str(good))
        page.get_by_role("button", name="Import").click()
        page.wait_for_url(f"{o}/points?imported=2&unchanged=1")
        status = page.get_by_role("status")
        assert status.inner_text() == (
            "2 routing points were imported: 1 changed, 1 already as the file says."
        )
        etag = _api(url, secrets["read"]).headers["etag"]
        page.get_by_label("CSV or JSON file").set_input_files(str(good))
        page.get_by_role("button", name="Import").click()
        page.wait_for_url(f"{o}/points?imported=2&unchanged=2")
        assert status.inner_text() == (
            "The 2 routing points were already as the file says: nothing was written."
        )
        _shoot(page, store, "points-import-unchanged")
        # An rp_id is found by its first digits (only the whole id was), and a point never
        # used says so (its cell was blank).
        page.goto(f"{o}/points?q=10")
        assert page.locator("tbody tr").all_inner_texts()[0].startswith("101\t")
        assert page.locator("tbody tr").count() == 2
        assert page.locator("#point-102 td").nth(6).inner_text() == "never"
        unchanged = httpx.get(
            f"{url}{ENDPOINT}",
            params={"api": "routing_points"},
            headers={"wolkvox-token": secrets["read"], "if-none-match": etag},
        )
        assert unchanged.status_code == 304

        # IP allow-list: a call from outside is refused in the envelope, and costs nothing.
        page.goto(f"{o}/allowlist")
        page.get_by_label(re.compile("^Address or CIDR")).fill("10.0.0.0/8")
        page.get_by_role("button", name="Add").click()
        page.wait_for_url(f"{o}/allowlist")
        _shoot(page, store, "allowlist")
        outside = _api(url, secrets["read"])
        assert outside.status_code == 403
        assert outside.json() == {
            "code": 403,
            "error": "FORBIDDEN",
            "msg": "THE ADDRESS 127.0.0.1 IS NOT IN THE OPERATION'S IP ALLOW-LIST",
            "data": None,
        }
        page.get_by_role("button", name="Remove 10.0.0.0/8").click()
        page.wait_for_url(f"{o}/allowlist")
        info = httpx.get(
            f"{url}{ENDPOINT}",
            params={"api": "token_info"},
            headers={"wolkvox-token": secrets["read"]},
        ).json()["data"][0]
        # 3 + routing=101 + routing=300 twice + the ETag's + this token_info: the refused
        # call and the 304 cost nothing.
        assert info["token_use_today"] == "8"

        # Usage report and its CSV.
        page.goto(f"{o}/usage")
        assert page.locator("figure.chart svg").is_visible()
        _shoot(page, store, "usage")
        # On a phone the chart scrolls inside its frame: it opens on its last days, today in
        # view (it opened on the first days, today off to the right).
        page.set_viewport_size({"width": 390, "height": 844})
        today_in_view = page.evaluate(
            """() => {
              const frame = document.querySelector('figure.chart').getBoundingClientRect();
              const days = document.querySelectorAll('figure.chart text[text-anchor=middle]');
              const today = days[days.length - 1].getBoundingClientRect();
              return today.left >= frame.left && today.right <= frame.right;
            }"""
        )
        assert today_in_view
        page.set_viewport_size({"width": 1280, "height": 900})
        # Counts: whole numbers on the axis (a peak of 1 had a tick at 0.5).
        ticks = page.eval_on_selector_all(
            "figure.chart text[text-anchor=end]", "marks => marks.map(m => m.textContent)"
        )
        assert ticks
        assert all(tick.isdigit() for tick in ticks), ticks
        # The pages name their icon (Chromium asked for /favicon.ico: a 404 on every page).
        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert icon is not None
        assert httpx.get(url + icon).status_code == 200
        with page.expect_download() as download:
            page.get_by_role("link", name="Download as CSV").click()
        assert download.value.suggested_filename.startswith("usage-0032-")

        # Every change is in the audit log, with who and from where.
        page.goto(f"{o}/audit")
        _shoot(page, store, "audit")
        actions = page.locator("#audit tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.action)"
        )
        for action in (
            "console.signin",
            "token.create",
            "token.revoke",
            "point.update",
            "allowlist.add",
            "allowlist.remove",
        ):
            assert action in actions
        assert "127.0.0.1" in page.locator("#audit").inner_text()

        # Another operation's pages do not exist for this session.
        other = page.goto(f"{url}/console/o/0033/tokens")
        assert other is not None
        assert other.status == 404
        assert "Operation 0033" not in page.content()
        # A page that does not exist keeps the operator's own navigation (it had none).
        nav = page.get_by_role("link", name="Routing points")
        assert nav.get_attribute("href") == "/console/o/0032/points"
        missing = page.goto(f"{o}/points/999")
        assert missing is not None
        assert missing.status == 404
        assert nav.get_attribute("href") == "/console/o/0032/points"
        _shoot(page, store, "not-found")

        # A form posted without its CSRF token is refused, and changes nothing.
        forged = context.request.post(f"{o}/allowlist", form={"address": "192.0.2.0/24"})
        assert forged.status == 403
        page.goto(f"{o}/allowlist")
        assert "192.0.2.0/24" not in page.content()

        # Sign-out ends the session at once, even for a copy of the cookie.
        stolen = {c["name"]: c["value"] for c in context.cookies()}
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{url}/console/signin")
        replay = httpx.get(f"{o}/", cookies=stolen, follow_redirects=False)
        assert replay.status_code == 303
        assert replay.headers["location"] == "/console/signin"
        context.close()
