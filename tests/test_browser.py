"""What a person sees in a real browser: `/` leads to the docs, and `/docs` renders every
operation of `/openapi.json` (Swagger UI must read the 3.1 document the server emits)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import screenshot
from tests.support.servers import LiveServer

pytestmark = pytest.mark.browser


def test_docs_render_every_operation(live: LiveServer, browser_page: Page) -> None:
    document = httpx.get(f"{live.url}/openapi.json").json()
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert len(operations) >= 7
    errors: list[str] = []
    browser_page.on("pageerror", lambda error: errors.append(str(error)))
    browser_page.goto(f"{live.url}/docs")
    blocks = browser_page.locator(".opblock")
    expect(blocks).to_have_count(len(operations), timeout=30_000)
    screenshot(browser_page, "docs")
    text = browser_page.locator("#swagger-ui").inner_text()
    assert "Unable to render this definition" not in text
    rendered = {
        (
            block.locator(".opblock-summary-method").inner_text().strip(),
            block.locator(".opblock-summary-path").inner_text().strip().replace("\u200b", ""),
        )
        for block in blocks.all()
    }
    assert rendered == operations
    assert errors == []


def test_the_root_leads_a_browser_to_the_docs(live: LiveServer, browser_page: Page) -> None:
    browser_page.goto(live.url + "/")
    screenshot(browser_page, "landing")
    expect(browser_page).to_have_title("routing-points")
    browser_page.get_by_role("link", name="API documentation").click()
    expect(browser_page).to_have_url(re.compile(r"/docs$"))
    expect(browser_page.locator(".opblock").first).to_be_visible(timeout=30_000)
    browser_page.goto(live.url + "/")
    browser_page.get_by_role("link", name="Console").click()
    expect(browser_page.get_by_role("button", name="Sign in")).to_be_visible()


def test_a_console_address_that_does_not_exist_is_a_page(
    live: LiveServer, browser_page: Page
) -> None:
    """It was the API's JSON envelope, shown raw in the browser."""
    answer = browser_page.goto(live.url + "/console/nothing/here")
    assert answer is not None
    assert answer.status == 404
    screenshot(browser_page, "console-not-found")
    expect(browser_page.get_by_role("alert")).to_have_text("There is no such page in the console.")
    browser_page.get_by_role("link", name="Back to the console").click()
    expect(browser_page.get_by_role("button", name="Sign in")).to_be_visible()


def test_the_root_keeps_the_envelope_for_api_clients(live: LiveServer) -> None:
    envelope = {
        "code": 404,
        "error": "NOT FOUND",
        "msg": "THE RESOURCE YOU ARE LOOKING FOR DOES NOT EXIST",
        "data": None,
    }
    browser_accept = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with httpx.Client(base_url=live.url) as http:
        for request_headers in (
            {},
            {"accept": "application/json"},
            {**browser_accept, "wolkvox-token": "anything"},
        ):
            answer = http.get("/", headers=request_headers)
            assert answer.status_code == 404
            assert answer.json() == envelope
        page = http.get("/", headers=browser_accept)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in page.text
