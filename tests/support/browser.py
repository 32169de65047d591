"""A real browser for tests: Debian's Chromium driven by Playwright (never `playwright install`).

`launch_chromium()` starts it headless; the `browser_page` fixture (tests/conftest.py) gives a
test a fresh page and skips where Chromium is missing, failing instead in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.services import service_missing

CHROMIUM = os.environ.get("ROUTING_POINTS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Where screenshots go: ignored by git, kept after the run to be looked at.
SCREENSHOTS = Path(__file__).parent.parent / "screenshots"


def chromium_path() -> str | None:
    """Chromium's executable, or None where it is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@contextlib.contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Headless Chromium; raises FileNotFoundError where it is not installed."""
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError(f"{CHROMIUM} (Debian's chromium package)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """`launch_chromium`, or a skip (a failure in CI) where Chromium is not installed."""
    with contextlib.ExitStack() as stack:
        try:
            browser = stack.enter_context(launch_chromium())
        except FileNotFoundError as exc:
            service_missing("Chromium", exc)
        yield browser
