"""``pubsocket.js`` in headless Chromium notices a dead link by the v1 heartbeat (issue
19): behind a black-hole proxy (tests/blackhole.py: nothing forwarded, nothing closed,
so neither the socket nor the browser's `offline` event says anything) it leaves
"connected" within the heartbeat bound, and once the path heals it reconnects and
recovers every message published meanwhile exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

from pubsocket import App
from tests.blackhole import BlackHole, black_hole
from tests.browser.test_client_js import WAIT_MS, make_app, open_page

HEARTBEAT = 1.0  # the server's interval; the client's bound is 1 + min(1, 5) = 2 s
BOUND_MS = 2000


async def hold_and_heal(app: App, page: Any, hole: BlackHole, url: str, token: str,
                        transport: str | None = None) -> Any:
    """On `page`, a client of `url` (whose path runs through `hole`) subscribed to
    "chat:hb" gets 3 messages and stays "connected" past the bound on the pings alone;
    held, it leaves "connected" within `BOUND_MS` (+800 ms) with 1006 "no heartbeat" and
    keeps reconnecting; healed, it reconnects and has all 9 messages exactly once, in
    order. With `transport`, the client uses it before the hold and after the heal.
    Returns the page's record (`states`, `got`)."""
    await page.evaluate("""async ({url, token}) => {
      const t = window.t = {states: [], got: []};
      // timeout: an attempt into the black hole gives up after 1.5 s
      const client = window.client = ps.connect(url, {token, timeout: 1500,
                                                      backoff: () => 200});
      client.on("state", (e) => t.states.push({...e, at: performance.now()}));
      await client.subscribe("chat:hb", (data, m) => t.got.push([data, m.offset]));
    }""", {"url": url, "token": token})
    for n in (1, 2, 3):
        await app.hub.publish("chat:hb", n)
    await page.wait_for_function("() => t.got.length === 3", timeout=WAIT_MS)
    if transport is not None:
        assert await page.evaluate("() => client.transport") == transport
    await asyncio.sleep(2.5)  # idle past the bound, kept alive by the pings
    assert await page.evaluate("() => client.state") == "connected"

    hole.hold()
    await page.evaluate("() => { t.heldAt = performance.now(); }")
    for n in range(4, 9):  # published while the browser's path is a black hole
        await app.hub.publish("chat:hb", n)
    await page.wait_for_function("() => client.state !== 'connected'", timeout=WAIT_MS)
    left = await page.evaluate("() => [t.states.at(-1), t.states.at(-1).at - t.heldAt]")
    assert left[0]["state"] == "reconnecting"
    assert (left[0]["code"], left[0]["reason"]) == (1006, "no heartbeat")
    assert left[1] <= BOUND_MS + 800, f"left 'connected' {left[1]:.0f} ms after the cut"
    await asyncio.sleep(2.0)  # attempts into the black hole time out and retry
    assert await page.evaluate("() => client.state") == "reconnecting"

    hole.heal()
    await page.wait_for_function(
        "() => client.state === 'connected' && t.states.at(-1).reconnected",
        timeout=WAIT_MS)
    await app.hub.publish("chat:hb", 9)
    await page.wait_for_function("() => t.got.length >= 9", timeout=WAIT_MS)
    await asyncio.sleep(0.3)  # a duplicate would arrive by now
    out = await page.evaluate("() => t")
    assert out["got"] == [[n, n] for n in range(1, 10)]  # each exactly once, in order
    if transport is not None:
        assert out["states"][-1]["transport"] == transport
    return out


async def test_a_black_holed_link_leaves_connected_within_the_bound_and_recovers(
        serve: Any, browser: Any) -> None:
    # The page comes from the server, the socket goes through the proxy's port.
    app = make_app(heartbeat=HEARTBEAT, allowed_origins=("*",))
    running = await serve(app)
    token = app.auth.issue(sub="alice")
    async with black_hole(running.port) as hole:
        page, errors = await open_page(browser, running.http + "/")
        out = await hold_and_heal(app, page, hole, f"ws://127.0.0.1:{hole.port}/ws/chat",
                                  token)
        assert out["states"][-1]["recovered"] is True
        assert errors == []


async def test_the_heartbeat_option_sets_the_bound(serve: Any, browser: Any) -> None:
    """`heartbeat: 4000` on a server pinging every second: the black hole is called 3-4 s
    after the cut (4 s after the last ping), not within the default 2 s; `heartbeat: 0`
    does not watch at all."""
    app = make_app(heartbeat=HEARTBEAT, allowed_origins=("*",))
    running = await serve(app)
    token = app.auth.issue(sub="alice")
    async with black_hole(running.port) as hole:
        page, errors = await open_page(browser, running.http + "/")
        await page.evaluate("""async ({url, token}) => {
          const t = window.t = {states: []};
          const client = window.client = ps.connect(url, {token, heartbeat: 4000,
                                                          backoff: () => 200});
          const unwatched = window.unwatched = ps.connect(url, {token, heartbeat: 0});
          client.on("state", (e) => t.states.push({...e, at: performance.now()}));
          await client.subscribe("chat:hb", () => {});
          await unwatched.subscribe("chat:hb", () => {});
        }""", {"url": f"ws://127.0.0.1:{hole.port}/ws/chat", "token": token})
        hole.hold()
        await page.evaluate("() => { t.heldAt = performance.now(); }")
        await page.wait_for_function("() => client.state !== 'connected'", timeout=WAIT_MS)
        left = await page.evaluate("() => [t.states.at(-1), t.states.at(-1).at - t.heldAt]")
        assert (left[0]["code"], left[0]["reason"]) == (1006, "no heartbeat")
        assert 2600 <= left[1] <= 4000 + 800, f"left 'connected' {left[1]:.0f} ms after the cut"
        assert await page.evaluate("() => unwatched.state") == "connected"
        hole.heal()
        await page.wait_for_function("() => client.state === 'connected'", timeout=WAIT_MS)
        assert errors == []
