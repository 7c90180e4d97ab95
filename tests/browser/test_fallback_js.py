"""``/pubsocket.js`` where WebSocket is blocked (issue 19): behind a proxy that refuses
every upgrade (tests/ws_refusing_proxy.py: 403, or a dropped connection) the same
``connect("ws://...")`` falls back to the pubsocket.v1 HTTP transport (a streamed POST
response plus POSTed commands) and everything works as over a WebSocket: the chat
demo for two people, one of them going offline and coming back to every missed
message exactly once, and a black-holed stream noticed by the heartbeat."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pubsocket import load_app
from tests.blackhole import black_hole
from tests.browser.test_chat import (
    CHAT,
    TRANSPORT,
    come_back,
    each_once,
    greet,
    members_are,
    miss_while_offline,
    say,
    shows,
    two_people,
)
from tests.browser.test_client_js import WAIT_MS, make_app, open_page
from tests.browser.test_heartbeat_js import hold_and_heal
from tests.conftest import make_settings
from tests.ws_refusing_proxy import ws_refusing_proxy


async def test_the_chat_demo_works_behind_a_websocket_refusing_proxy(
        serve: Any, browser: Any, output_dir: Path) -> None:
    running = await serve(load_app(CHAT, make_settings()))
    async with ws_refusing_proxy(running.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/"
        desk, phone, alice, bob, errors, sockets = await two_people(browser, url)
        assert proxy.refused >= 2, "both pages should have tried a WebSocket first"
        for page in (alice, bob):
            assert await page.evaluate(TRANSPORT) == "http_stream"
            assert await page.evaluate("() => pubsocketDemo.client.transport") == "http_stream"
            assert "over HTTP" in await page.inner_text("#state")

        await greet(alice, bob)
        await bob.screenshot(path=str(output_dir / "chat-fallback-phone.png"))

        missed = await miss_while_offline(alice, bob, phone)  # bob's stream ends
        refused = proxy.refused
        await come_back(alice, bob, phone, missed, transport="http_stream")
        await say(bob, "thanks")
        await shows(alice, "thanks", 1)
        await each_once(bob, missed)
        # The page remembered that http_stream works: the return did not try WebSocket.
        assert proxy.refused == refused
        assert sockets == [] or all(ws.is_closed() for ws in sockets)
        await bob.screenshot(path=str(output_dir / "chat-fallback-phone-recovered.png"))
        assert errors == []
        await phone.close()
        await members_are(alice, ["alice"])
        await desk.close()


async def test_fallback_says_which_transport_and_is_remembered_by_the_page(
        serve: Any, browser: Any) -> None:
    """A dropped upgrade (no answer at all) falls back as a 403 does; the state events
    name the transport; a second client on the page goes straight to http_stream; with
    no proxy in the way the same page's client uses WebSocket."""
    app = make_app(allowed_origins=("*",))
    running = await serve(app)
    token = app.auth.issue(sub="alice")
    async with ws_refusing_proxy(running.port, mode="drop") as proxy:
        page, errors = await open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        out = await page.evaluate("""async ({url, token}) => {
          const t = {states: [], got: []};
          const started = performance.now();
          const client = ps.connect(url, {token});
          client.on("state", (e) => t.states.push(e));
          await client.subscribe("chat:f", (data, m) => t.got.push([data, m.offset]));
          t.fellBackIn = performance.now() - started;
          t.pub = await client.publish("chat:f", "one");
          t.history = (await client.history("chat:f")).publications.map((p) => p.data);
          t.presence = Object.values(await client.presence("chat:f")).map((p) => p.user);
          await until(() => t.got.length === 1);
          const second = ps.connect(url, {token});
          const seen = [];
          second.on("state", (e) => seen.push(e));
          await until(() => second.state === "connected");
          t.second = [...seen];
          second.close();
          client.close();
          return t;
        }""", {"url": f"ws://127.0.0.1:{proxy.port}/ws/chat", "token": token})
        assert out["states"][0] == {
            "state": "connecting", "transport": "http_stream", "attempt": 0, "delay": 0,
            "code": 1006, "reason": "", "fallback": True}
        assert out["states"][1] == {"state": "connected", "transport": "http_stream",
                                    "reconnected": False, "recovered": None}
        assert out["pub"] == {"offset": 1} and out["got"] == [["one", 1]]
        assert out["history"] == ["one"] and out["presence"] == ["alice"]
        assert out["second"] == [{"state": "connected", "transport": "http_stream",
                                  "reconnected": False, "recovered": None}]
        assert proxy.refused == 1  # the second client did not try WebSocket
        assert out["fellBackIn"] < 3000
        assert errors == []

    page, errors = await open_page(browser, running.http + "/")
    states = await page.evaluate("""async ({url, token}) => {
      const client = ps.connect(url, {token});
      const states = [];
      client.on("state", (e) => states.push(e));
      await until(() => client.state === "connected");
      client.close();
      return states;
    }""", {"url": running.ws + "/ws/chat", "token": token})
    assert states[0] == {"state": "connected", "transport": "websocket",
                         "reconnected": False, "recovered": None}
    assert errors == []


async def test_a_black_holed_stream_leaves_connected_within_the_bound_and_recovers(
        serve: Any, browser: Any) -> None:
    """The heartbeat on the HTTP transport: browser -> WebSocket-refusing proxy ->
    black hole -> server. Held, the stream says nothing and closes nothing; the client
    leaves "connected" within interval + margin, and recovers on http_stream once healed."""
    app = make_app(heartbeat=1.0, allowed_origins=("*",))  # bound: 1 + min(1, 5) = 2 s
    running = await serve(app)
    token = app.auth.issue(sub="alice")
    async with black_hole(running.port) as hole, ws_refusing_proxy(hole.port) as proxy:
        page, errors = await open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        out = await hold_and_heal(app, page, hole, f"ws://127.0.0.1:{proxy.port}/ws/chat",
                                  token, transport="http_stream")
        assert out["states"][-1]["recovered"] is True
        assert errors == []


async def test_websockets_cut_soon_after_opening_make_the_page_prefer_http_stream(
        serve: Any, browser: Any) -> None:
    """A proxy that lets the upgrade through and cuts upgraded connections 1 s later
    (no close frame: 1006): after three such WebSockets in a row the client moves to
    http_stream and stays there, and every publication reaches it exactly once."""
    app = make_app(allowed_origins=("*",))
    running = await serve(app)
    token = app.auth.issue(sub="alice")
    async with ws_refusing_proxy(running.port, mode="kill", kill_after=1.0) as proxy:
        page, errors = await open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        await page.evaluate("""async ({url, token}) => {
          const t = window.t = {states: [], got: []};
          const client = window.client = ps.connect(url, {token, backoff: () => 50});
          client.on("state", (e) => t.states.push(e));
          await client.subscribe("chat:k", (data, m) => t.got.push([data, m.offset]));
        }""", {"url": f"ws://127.0.0.1:{proxy.port}/ws/chat", "token": token})
        for n in range(1, 46):  # over ~4.5 s: across the cuts and the move
            await app.hub.publish("chat:k", n)
            await asyncio.sleep(0.1)
        await page.wait_for_function(
            "() => client.transport === 'http_stream' && client.state === 'connected'",
            timeout=WAIT_MS)
        await asyncio.sleep(1.0)  # no cut comes on the stream
        await app.hub.publish("chat:k", 46)
        await page.wait_for_function("() => t.got.length >= 46", timeout=WAIT_MS)
        await asyncio.sleep(0.3)
        out = await page.evaluate("() => t")
        assert proxy.refused == 3  # three WebSockets, then no more
        cut = [e for e in out["states"] if e["state"] == "reconnecting"]
        assert [(e["code"], e["transport"]) for e in cut] == [
            (1006, "websocket"), (1006, "websocket"), (1006, "http_stream")]
        assert out["states"][-1]["state"] == "connected"
        assert out["states"][-1]["transport"] == "http_stream"
        assert out["got"] == [[n, n] for n in range(1, 47)]  # each exactly once, in order
        assert errors == []


async def test_a_429_on_the_http_transport_is_waited_out(serve: Any, browser: Any) -> None:
    """The HTTP transport sees what a browser's WebSocket hides: a 429's Retry-After
    (here the address spent its failed-authentication budget on a bad token) makes the
    next attempt wait at least that long, whatever the backoff says."""
    app = make_app(allowed_origins=("*",), auth_failure_burst=1, auth_failure_limit=0.25)
    running = await serve(app)
    async with ws_refusing_proxy(running.port) as proxy:
        page, errors = await open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        out = await page.evaluate("""async (url) => {
          const states = [];
          const client = ps.connect(url, {token: "not-a-token", backoff: () => 20});
          client.on("state", (e) => states.push(e));
          await until(() => states.some((e) => e.reason === "refused: HTTP 429"));
          client.close();
          return states.filter((e) => e.state === "reconnecting" && !e.fallback);
        }""", f"ws://127.0.0.1:{proxy.port}/ws/chat")
        assert [e["reason"] for e in out] == ["refused: HTTP 401", "refused: HTTP 429"]
        assert out[0]["delay"] == 20  # the backoff
        assert 1000 <= out[1]["delay"] <= 4000  # Retry-After: 1/0.25 s at most
        assert errors == []
