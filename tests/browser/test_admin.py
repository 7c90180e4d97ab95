"""The ops page in headless Chromium: the live connection count follows real clients, the
publish form reaches a subscriber, a refused key stops the polling. Screenshots go to
`output_dir` (admin.png, admin-phone.png)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from pubsocket import Debug
from tests.app.test_admin import admin_app, v1_subscribe
from tests.app.test_pubsub import V1, recv_json
from tests.conftest import API_KEY

WAIT_MS = 5000


async def shows(tab: Any, selector: str, text: str) -> None:
    """Wait (bounded) until `selector`'s text is exactly `text`."""
    await tab.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent === t", arg=[selector, text],
        timeout=WAIT_MS)


async def open_page(browser: Any, url: str, **options: Any) -> tuple[Any, list[str]]:
    """A new tab on the ops page, signed in; returns it and its console/page errors."""
    tab = await browser.new_page(**options)
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    await tab.goto(url)
    await tab.fill("#key", API_KEY)
    await tab.click("#login button[type=submit]")
    await tab.wait_for_selector("#dashboard", state="visible", timeout=WAIT_MS)
    return tab, problems


async def test_the_page_follows_connections_and_publishes(serve: Any, browser: Any,
                                                          output_dir: Path) -> None:
    srv = await serve(admin_app())
    tab, problems = await open_page(browser, srv.http + "/admin",
                                    viewport={"width": 1100, "height": 900})
    await shows(tab, "#connections", "0")
    url = f"{srv.ws}/ws/chat"
    async with connect(url, subprotocols=V1) as a, connect(url, subprotocols=V1) as b:  # type: ignore[list-item]
        await v1_subscribe(a, "test")
        await v1_subscribe(b, "lobby")
        await shows(tab, "#connections", "2")
        await shows(tab, "#topic-rows tr:first-child td:first-child", "lobby")
        await tab.fill("#topic", "test")
        await tab.fill("#data", '{"text": "from the form", "n": 1}')
        await tab.click("#publish button[type=submit]")
        got = await recv_json(a, timeout=WAIT_MS / 1000)
        assert got["topic"] == "test" and got["data"] == {"text": "from the form", "n": 1}
        await shows(tab, "#publish-result", f"published at offset {got['offset']}")
        await shows(tab, "#published", "1")
        Debug.warning("ops page test: a warning from the app")
        await shows(tab, "#errors li:first-child span:last-child",
                    "ops page test: a warning from the app")
        await tab.screenshot(path=str(output_dir / "admin.png"), full_page=True)
    await shows(tab, "#connections", "0")
    assert problems == []  # no CSP violation, no script error
    assert (output_dir / "admin.png").stat().st_size > 10_000


async def test_bad_json_and_a_refused_publish_show_an_error(serve: Any, browser: Any) -> None:
    srv = await serve(admin_app())
    tab, _ = await open_page(browser, srv.http + "/admin")
    await tab.fill("#data", "{not json")
    await tab.click("#publish button[type=submit]")
    await shows(tab, "#publish-result", "data is not valid JSON")
    await tab.fill("#data", "1")
    await tab.fill("#topic", "bad topic!")
    await tab.click("#publish button[type=submit]")
    await tab.wait_for_function(
        # A function, not an expression string: Playwright polls a string with eval(),
        # which the page's CSP (script-src 'self') refuses.
        "() => document.querySelector('#publish-result').textContent"
        ".startsWith('refused (400)')",
        timeout=WAIT_MS)


async def test_a_wrong_key_stops_polling_with_a_message(serve: Any, browser: Any,
                                                        output_dir: Path) -> None:
    srv = await serve(admin_app())
    tab = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    await tab.goto(srv.http + "/admin")
    await tab.fill("#key", "not-the-key")
    await tab.click("#login button[type=submit]")
    await shows(tab, "#status", "the API key was refused (401)")
    assert await tab.is_visible("#login") and not await tab.is_visible("#dashboard")
    assert await tab.evaluate("sessionStorage.length") == 0
    await tab.fill("#key", API_KEY)
    await tab.click("#login button[type=submit]")
    await shows(tab, "#connections", "0")
    width = await tab.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width}px)"
    await tab.screenshot(path=str(output_dir / "admin-phone.png"), full_page=True)
    assert json.loads(await tab.evaluate("JSON.stringify(sessionStorage.length)")) == 1
