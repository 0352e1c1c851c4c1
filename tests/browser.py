"""A real browser for the tests and benchmarks: Debian's headless Chromium driven by Playwright for Python.

Playwright's own browser download is never used (`playwright install` fetches from a CDN): the system's
/usr/bin/chromium runs. A test that needs it is marked `requires_browser` and skips saying what is missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
PAGE_TIMEOUT_MS = 60_000  # a page's waits on a loaded 2-core machine; a healthy page needs well under a second


def _browser_problem() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is absent (Debian's chromium package)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (the dev extra has it)"
    return None


BROWSER_PROBLEM = _browser_problem()
requires_browser = pytest.mark.skipif(BROWSER_PROBLEM is not None, reason=BROWSER_PROBLEM or "")


@contextmanager
def chromium_page(**context_options: Any) -> Iterator[Any]:
    """A fresh page in a fresh headless Chromium (a cold cache), closed after the block. Console errors and
    uncaught exceptions of the page are collected in `page.problems` for the test to assert on."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_context(**context_options).new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
            page.on("console", lambda message: problems.append(f"console: {message.text}")
                    if message.type == "error" else None)
            page.problems = problems
            yield page
        finally:
            browser.close()
