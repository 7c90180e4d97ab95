"""Mounted under a prefix, in headless Chromium: the chat demo and the ops page inside a
FastAPI app at /rt (uvicorn in this loop), and the Django example's page, where the
browser's own session cookie authenticates the socket (a subprocess, as in
tests/integration/test_django.py). Every URL the pages use must resolve below /rt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pubsocket import ASGIApp, load_app
from tests.browser.test_admin import open_page, shows
from tests.browser.test_chat import CHAT, WAIT_MS, enter, members_are, say
from tests.browser.test_chat import shows as chat_shows
from tests.conftest import make_settings
from tests.integration.test_django import PASSWORD, SITE
from tests.integration.test_django import site_env as site_env  # the fixture
from tests.integration.test_mount import uvicorn_serving
from tests.integration.uvicorn_proc import Host, uvicorn_host

fastapi = pytest.importorskip("fastapi")


def watch(page: Any, problems: list[str]) -> None:
    """Collect the page's script errors and failed requests (a wrong URL shows here)."""
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}")
            if r.status >= 400 else None)


async def test_chat_demo_and_ops_page_mounted_in_fastapi(browser: Any, output_dir: Path) -> None:
    rt = ASGIApp(load_app(CHAT, make_settings()))
    host = fastapi.FastAPI(lifespan=rt.lifespan)
    host.mount("/rt", rt)
    async with uvicorn_serving(host) as port:
        base = f"http://127.0.0.1:{port}/rt"
        context = await browser.new_context()
        problems: list[str] = []
        context.on("page", lambda page: watch(page, problems))
        alice = await enter(context, base + "/", "alice", problems)
        bob = await enter(context, base + "/", "bob", problems)
        await members_are(alice, ["alice", "bob"])
        await say(alice, "hello under /rt")
        await chat_shows(bob, "hello under /rt", 1)
        # Every request the pages made went below the mount.
        requested: list[str] = []
        context.on("request", lambda r: requested.append(r.url))
        await bob.reload()
        await bob.wait_for_selector("#nick", timeout=WAIT_MS)
        assert requested and all(u.startswith(base + "/") for u in requested), requested

        ops, ops_problems = await open_page(browser, base + "/admin")
        await shows(ops, "#connections", "1")  # alice; bob's reload closed his socket
        await ops.fill("#topic", "room:lobby")
        await ops.fill("#data", '{"text": "from the ops page"}')
        await ops.click("#publish button[type=submit]")
        await shows(ops, "#publish-result", "published at offset 2")
        await alice.screenshot(path=str(output_dir / "mounted-chat.png"))
        await context.close()
        assert problems == [] and ops_problems == []


@pytest.fixture
def django_site(site_env: dict[str, str]) -> Iterator[Host]:
    with uvicorn_host("chatsite.asgi:application", str(SITE),
                      ready_path="/accounts/login/", **site_env) as host:
        yield host


async def test_django_page_socket_rides_the_session_cookie(
        browser: Any, django_site: Host, output_dir: Path) -> None:
    context = await browser.new_context()
    problems: list[str] = []
    context.on("page", lambda page: watch(page, problems))
    page = await context.new_page()
    await page.goto(django_site.http + "/")  # login_required: to the login form
    await page.fill("#id_username", "alice")
    await page.fill("#id_password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector('#state[data-state="connected"]', timeout=WAIT_MS)
    await page.fill("#text", "cookie-authenticated hello")
    await page.press("#text", "Enter")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#messages li')].some("
        "(li) => li.textContent === 'alice: cookie-authenticated hello')", timeout=WAIT_MS)
    await page.screenshot(path=str(output_dir / "mounted-django.png"))
    await context.close()
    # (The foreign-Origin refusal is tests/integration/test_django.py's: a browser would
    # not even send this SameSite=Lax cookie cross-site, so it cannot show it here.)
    assert problems == []
