"""Headless Chromium for page tests: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def browser_context(profile: Path) -> Iterator[Any]:
    """A Playwright browser context on Debian's chromium with a fresh profile folder.

    Fails (not skips) when chromium is missing: `make test` installs it (scripts/setup-system.sh).
    """
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run `make test` (scripts/setup-system.sh installs it)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield context
        finally:
            context.close()
