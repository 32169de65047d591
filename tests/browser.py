"""A real browser for tests: Debian's chromium driven by Playwright's Python package.

Never `playwright install`: the browser is the system's (`apt-get install chromium`),
found by `executable_path`. Where it is missing the test skips, and in CI it fails, like
`service_missing` in conftest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The system's chromium, or a skip (a failure in CI) naming what is missing."""
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(found):
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: it is required in CI")
        pytest.skip(f"{message}; CI runs these tests with it")
    return found


@contextlib.contextmanager
def launch_chromium() -> Iterator[Any]:
    """A headless chromium `Browser`, closed afterwards."""
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
