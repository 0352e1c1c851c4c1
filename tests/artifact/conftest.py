"""Fixtures of the artifact tests: each real browser (tests/browser.py), launched once per test module."""

from tests.browser import browser  # noqa: F401 (a fixture)
