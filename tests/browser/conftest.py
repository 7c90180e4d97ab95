"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is never used (CI has no network beyond package
registries): the browser is the system executable, found on PATH (``require`` skips
outside CI and fails under ``CI=true`` when it is missing). Screenshots go to
``tests/output/`` (or ``$PUBSOCKET_TEST_OUTPUT``), which git ignores.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.tools import require

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def output_dir() -> Path:
    """Where a test writes its screenshots (created on demand)."""
    root = Path(os.environ.get("PUBSOCKET_TEST_OUTPUT")
                or Path(__file__).resolve().parents[1] / "output")
    root.mkdir(parents=True, exist_ok=True)
    return root


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Any]:
    """A headless Chromium (`playwright.async_api.Browser`) for the block, on the running
    event loop (a module-scoped fixture may hold one for all its tests)."""
    executable = require("chromium", "the browser tests drive Debian's chromium")
    require("playwright", "the browser tests drive chromium through Playwright")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """A fresh headless Chromium (`playwright.async_api.Browser`), closed after the test."""
    async with launch_chromium() as instance:
        yield instance
