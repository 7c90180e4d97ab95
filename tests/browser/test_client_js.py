"""``/pubsocket.js`` driven directly in headless Chromium, against a real server.

A blank page imports the module; each test runs a script in it with `page.evaluate`
and checks what it saw. Server-side drops are real closes of the server's connection
(the control registry's ``disconnect`` with 1011, what a node does to a failing
connection), so reconnect, backoff, a refused token (401, seen as 1006 by browsers),
resubscription with ``since`` and recovery all run for real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from pubsocket import App, Websocket, pubsub
from pubsocket.brokers.base import HistoryPolicy
from tests.conftest import make_settings

WAIT_MS = 8000
PAGE = """<!doctype html><title>pubsocket.js</title><script type="module">
import * as ps from "/pubsocket.js";
window.ps = ps;
window.sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
window.until = async (test) => {  // bounded: 400 x 20 ms
  for (let i = 0; i < 400 && !test(); i++) await sleep(20);
  if (!test()) throw new Error("condition not met in time");
};
window.outcome = async (promise) => {
  try { return ["ok", await promise]; } catch (e) { return [e.name, e.code]; }
};
window.ready = true;
</script>"""


def make_app(**settings: Any) -> App:
    app = App(make_settings(**settings))
    pubsub("/ws/chat", app=app, secured=True, presence=["*"],
           history={"small:*": HistoryPolicy(2, 60)})

    @app.get("/")
    async def page(request: Any, response: Any) -> Any:
        return response(PAGE)

    return app


async def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await page.wait_for_function("() => window.ready === true", timeout=WAIT_MS)
    return page, errors


ROOMS = {"subscribe": ["chat:*"], "publish": ["chat:*"], "presence": ["chat:*"],
         "history": ["chat:*"]}


async def test_subscribe_publish_history_presence_and_errors(serve: Any, browser: Any) -> None:
    app = make_app()
    running = await serve(app)
    token = app.auth.issue(sub="alice", claims={"info": {"name": "Alice"}, "topics": ROOMS})
    page, errors = await open_page(browser, running.http + "/")
    out = await page.evaluate("""async ({url, token}) => {
      const out = {states: [], got: []};
      const client = ps.connect(url, {token});
      client.on("state", (e) => out.states.push(e.state));
      out.ack = await client.subscribe("chat:a", (data, m) => out.got.push([data.n, m.offset]));
      out.pubs = [];
      for (const n of [1, 2, 3]) out.pubs.push(await client.publish("chat:a", {n}));
      await until(() => out.got.length === 3);
      out.last2 = await client.history("chat:a", {limit: 2});
      out.after1 = await client.history("chat:a", {since: {offset: 1, epoch: out.ack.epoch}});
      out.presence = await client.presence("chat:a");
      out.stats = await client.presenceStats("chat:a");
      out.forbiddenSub = await outcome(client.subscribe("secret:x", () => {}));
      out.forbiddenPub = await outcome(client.publish("secret:x", 1));
      out.badTopic = await outcome(client.publish("no spaces allowed", 1));
      await client.unsubscribe("chat:a");
      out.pubAfter = await client.publish("chat:a", {n: 4});
      await sleep(100);
      client.close();
      out.afterClose = await outcome(client.publish("chat:a", {n: 5}));
      return out;
    }""", {"url": running.ws + "/ws/chat", "token": token})
    assert out["ack"]["topic"] == "chat:a" and out["ack"]["offset"] == 0
    assert out["ack"]["resubscribed"] is False and "recovered" not in out["ack"]
    assert out["pubs"] == [{"offset": 1}, {"offset": 2}, {"offset": 3}]
    assert out["got"] == [[1, 1], [2, 2], [3, 3]]  # not [4, 4]: unsubscribed
    assert [p["data"]["n"] for p in out["last2"]["publications"]] == [2, 3]
    assert [p["offset"] for p in out["after1"]["publications"]] == [2, 3]
    assert list(out["presence"].values()) == [{"user": "alice", "info": {"name": "Alice"}}]
    assert out["stats"] == {"connections": 1, "users": 1}
    assert out["forbiddenSub"] == ["PubsocketError", "forbidden"]
    assert out["forbiddenPub"] == ["PubsocketError", "forbidden"]
    assert out["badTopic"] == ["PubsocketError", "invalid_topic"]
    assert out["pubAfter"] == {"offset": 4}
    assert out["afterClose"] == ["PubsocketError", "closed"]
    assert out["states"] == ["connected", "closed"]
    assert errors == []


async def test_reconnect_recovers_each_topic_and_says_which_could_not(
        serve: Any, browser: Any) -> None:
    app = make_app()
    running = await serve(app)
    good = app.auth.issue(sub="alice")
    page, errors = await open_page(browser, running.http + "/")
    await page.evaluate("""async ({url, good}) => {
      const t = window.t = {queue: [good], calls: 0, backoffs: [], states: [], a: [], b: [],
                            gaps: [], subscribed: []};
      const client = window.client = ps.connect(url, {
        token: async () => {
          t.calls++;
          await until(() => t.queue.length > 0);
          return t.queue.shift();
        },
        backoff: (attempt) => { t.backoffs.push(attempt); return 20; },
      });
      client.on("state", (e) => t.states.push(e));
      const hooks = (name) => ({
        onGap: (gap) => t.gaps.push(gap),
        onSubscribed: (info) => t.subscribed.push([name, info.resubscribed, info.recovered]),
      });
      await client.subscribe("chat:r", (d) => t.a.push(d), hooks("chat:r"));
      await client.subscribe("small:r", (d) => t.b.push(d), hooks("small:r"));
    }""", {"url": running.ws + "/ws/chat", "good": good})
    await app.hub.publish("chat:r", 1)
    await app.hub.publish("small:r", 1)
    await page.wait_for_function("() => t.a.length === 1 && t.b.length === 1", timeout=WAIT_MS)

    # The server closes the connection (1011); the client waits for a token meanwhile.
    app.hub.registry.apply(orjson.dumps(
        {"op": "disconnect", "user": "alice", "code": 1011, "reason": "test drop"}))
    await page.wait_for_function("() => t.calls === 2", timeout=WAIT_MS)
    for n in (2, 3, 4):
        await app.hub.publish("chat:r", n)
        await app.hub.publish("small:r", n)  # history keeps 2 here: 2 is lost for good
    await page.evaluate("""() => {
      t.quick = outcome(client.publish("chat:r", "quick", {timeout: 100}));
      t.queued = outcome(client.publish("chat:r", "queued"));
    }""")
    assert await page.evaluate("() => t.quick") == ["PubsocketError", "timeout"]
    # One refused attempt (HTTP 401: a close 1006 in the browser), then a good token.
    await page.evaluate("(good) => t.queue.push('not-a-token', good)", good)
    await page.wait_for_function(
        "() => t.states.some((e) => e.state === 'connected' && e.reconnected)",
        timeout=WAIT_MS)
    out = await page.evaluate("async () => ({...t, queued: await t.queued})")
    assert out["a"][:4] == [1, 2, 3, 4] and out["a"].count(3) == 1
    assert out["b"] == [1]  # nothing old replayed where recovery failed
    assert out["queued"] == ["ok", {"offset": 5}]
    assert [(g["topic"], g["reason"], g["offset"]) for g in out["gaps"]] == [
        ("small:r", "not_recovered", 4)]
    assert ["chat:r", True, True] in out["subscribed"]
    assert ["small:r", True, False] in out["subscribed"]
    connected = [e for e in out["states"] if e["state"] == "connected"]
    assert connected[-1] == {"state": "connected", "transport": "websocket",
                             "reconnected": True, "recovered": False}
    # The refused upgrade was followed at once by an HTTP attempt with the same token
    # (refused too: no fallback to remember), then the backoff and a fresh token.
    assert out["calls"] == 3 and out["backoffs"] == [0, 1]
    reconnecting = [e for e in out["states"] if e["state"] == "reconnecting"]
    assert reconnecting[0]["code"] == 1011 and reconnecting[1]["code"] == 1006
    assert reconnecting[1]["fallback"] is True and reconnecting[1]["transport"] == "http_stream"
    assert reconnecting[2]["transport"] == "websocket" and "fallback" not in reconnecting[2]
    await app.hub.publish("small:r", 5)
    await page.wait_for_function("() => t.b.length === 2", timeout=WAIT_MS)
    assert await page.evaluate("() => t.b") == [1, 5]

    # 4003 (logout, ban): closed for good, no new token asked for.
    await app.hub.disconnect_user("alice")
    await page.wait_for_function("() => client.state === 'closed'", timeout=WAIT_MS)
    await asyncio.sleep(0.2)
    last = await page.evaluate("() => [t.calls, t.states.at(-1)]")
    assert last[0] == 3 and last[1]["code"] == 4003
    assert errors == []


async def test_expiring_token_is_refreshed_on_the_same_connection(
        serve: Any, browser: Any) -> None:
    app = make_app(token_grace=1.0)
    minted: list[float] = []

    @app.get("/mint")
    async def mint(request: Any, response: Any) -> Any:
        """Tokens made when asked for, so the short one's 1-2 s start at the connect."""
        minted.append(time.monotonic())
        if len(minted) == 1:
            return response(app.auth.issue(sub="alice", ttl=2), content_type="text/plain")
        return response(app.auth.issue(sub="alice", ttl=600, claims={"topics": ROOMS}),
                        content_type="text/plain")

    running = await serve(app)
    page, errors = await open_page(browser, running.http + "/")
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    await page.evaluate("""async (url) => {
      const t = window.t = {calls: 0, states: [], ended: [], got: [], errors: []};
      const client = window.client = ps.connect(url, {
        token: async () => {
          // `expiring` comes at once (< 30 s left): refresh once both subscriptions exist
          if (t.calls++ > 0) await until(() => t.ready);
          return (await fetch("/mint")).text();
        },
        backoff: () => 20,
      });
      client.on("state", (e) => t.states.push(e.state));
      client.on("error", (e) => t.errors.push(e.code));
      await client.subscribe("chat:a", (d) => t.got.push(d));
      await client.subscribe("other:b", () => {}, {onUnsubscribed: (r) => t.ended.push(r)});
      t.ready = true;
    }""", running.ws + "/ws/chat")
    await page.wait_for_function("() => t.calls === 2 && t.ended.length === 1",
                                 timeout=WAIT_MS)
    # Past the first token's exp (at most 2 s after minting) + the grace: no 4001 comes.
    await asyncio.sleep(max(0.0, minted[0] + 3.3 - time.monotonic()))
    out = await page.evaluate("""async () => {
      const ack = await client.publish("chat:a", "still here");
      await until(() => t.got.length === 1);
      return {...t, ack};
    }""")
    assert out["ended"] == ["forbidden"]  # the new token no longer allows other:b
    assert out["calls"] == 2 and out["states"] == ["connected"] and out["errors"] == []
    assert out["got"] == ["still here"]
    assert len(sockets) == 1
    assert errors == []


async def test_replayed_duplicates_and_gap_notices_from_a_scripted_server(
        serve: Any, browser: Any) -> None:
    """A scripted pubsocket.v1 peer (not the hub: it never overlaps a replay) sends what a
    client must survive: a resumed stream that repeats offsets it already delivered, a
    frame type it does not know, a `gap` notice and a stale offset after it. (The
    scripted peers expect the subscribe first: their clients do not ask for heartbeats.)"""
    app = make_app()
    commands: list[Any] = []

    @app.get("/ws/scripted")
    async def scripted(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection(subprotocols=["pubsocket.v1"])
        command = orjson.loads(await ws.receive())
        commands.append(command)
        frames: list[dict[str, Any]]
        if len(commands) == 1:
            frames = [{"type": "ack", "id": command["id"], "topic": "t", "offset": 0,
                       "epoch": "e1"}, *(_message(n) for n in (1, 2))]
        else:
            frames = [{"type": "ack", "id": command["id"], "topic": "t", "offset": 2,
                       "epoch": "e1", "recovered": True},
                      *(_message(n) for n in (1, 2, 3)), {"type": "from-the-future"},
                      {"type": "gap", "topic": "t", "offset": 5, "epoch": "e1"},
                      _message(4), _message(6)]
        for frame in frames:
            await ws.send(orjson.dumps(frame).decode())
        if len(commands) == 1:
            await ws.close(1011, "scripted drop")
            return
        async with asyncio.timeout(10):
            async for _ in ws:  # until the page closes the client
                pass

    running = await serve(app)
    page, errors = await open_page(browser, running.http + "/")
    out = await page.evaluate("""async (url) => {
      const t = {got: [], gaps: []};
      const client = ps.connect(url, {backoff: () => 20, heartbeat: 0});
      await client.subscribe("t", (d, m) => t.got.push(m.offset), {onGap: (g) => t.gaps.push(g)});
      await until(() => t.got.includes(6));
      await sleep(50);
      client.close();
      return t;
    }""", running.ws + "/ws/scripted")
    assert out["got"] == [1, 2, 3, 6]
    assert out["gaps"] == [{"topic": "t", "offset": 5, "epoch": "e1", "reason": "gap"}]
    assert commands[0] == {"action": "subscribe", "topic": "t", "id": 1}
    assert commands[1]["since"] == {"offset": 2, "epoch": "e1"}
    assert errors == []


def _message(offset: int) -> dict[str, Any]:
    return {"type": "message", "topic": "t", "offset": offset, "data": offset}


async def _drain(ws: Any, handle: Any = None) -> None:
    """Read commands (passing each to `handle`) until the page closes the client."""
    async with asyncio.timeout(10):
        async for raw in ws:
            if handle is not None:
                await handle(orjson.loads(raw))


async def _until(test: Any) -> None:
    for _ in range(250):  # bounded: 250 x 20 ms
        if test():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_broker_unavailable_subscribe_is_retried_not_dropped(
        serve: Any, browser: Any) -> None:
    """`broker_unavailable` means "retry later" (docs/protocol.md "Errors"): a resubscribe
    or a first subscribe answered so is kept and sent again after a backoff, and the
    reconnect it belongs to is not reported as recovered."""
    app = make_app()
    connections: list[list[Any]] = []

    @app.get("/ws/retry")
    async def retry(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection(subprotocols=["pubsocket.v1"])
        commands: list[Any] = []
        connections.append(commands)
        if len(connections) == 1:
            command = orjson.loads(await ws.receive())
            commands.append(command)
            for frame in ({"type": "ack", "id": command["id"], "topic": "t", "offset": 0,
                           "epoch": "e1"}, _message(1)):
                await ws.send(orjson.dumps(frame).decode())
            await ws.close(1011, "scripted drop")
            return

        async def answer(command: Any) -> None:
            commands.append(command)
            topic, seen = command["topic"], [c["topic"] for c in commands].count(command["topic"])
            frames: list[dict[str, Any]]
            if seen == 1:  # the first try of each topic on this socket
                frames = [{"type": "error", "id": command["id"], "code": "broker_unavailable",
                           "message": "the broker is unavailable; retry later"}]
            elif topic == "t":
                frames = [{"type": "ack", "id": command["id"], "topic": "t", "offset": 1,
                           "epoch": "e1", "recovered": True}, _message(2)]
            else:
                frames = [{"type": "ack", "id": command["id"], "topic": topic, "offset": 0,
                           "epoch": "e2"}]
            for frame in frames:
                await ws.send(orjson.dumps(frame).decode())

        await _drain(ws, answer)

    running = await serve(app)
    page, errors = await open_page(browser, running.http + "/")
    out = await page.evaluate("""async (url) => {
      const t = {got: [], states: [], ended: [], subscribed: [], gaps: []};
      const client = ps.connect(url, {backoff: () => 20, heartbeat: 0});
      client.on("state", (e) => t.states.push(e));
      await client.subscribe("t", (d) => t.got.push(d), {
        onUnsubscribed: (r) => t.ended.push(r), onGap: (g) => t.gaps.push(g),
        onSubscribed: (i) => t.subscribed.push([i.resubscribed, i.recovered ?? null]),
      });
      await until(() => t.states.some((e) => e.state === "connected" && e.reconnected));
      t.u = await outcome(client.subscribe("u", () => {}, {timeout: 3000}));
      await until(() => t.got.includes(2));
      await sleep(50);
      client.close();
      return t;
    }""", running.ws + "/ws/retry")
    assert out["ended"] == [] and out["gaps"] == []  # kept, and resumed with nothing missed
    assert out["got"] == [1, 2]
    assert out["subscribed"] == [[False, None], [True, True]]
    connected = [e for e in out["states"] if e["state"] == "connected"]
    assert connected == [
        {"state": "connected", "transport": "websocket", "reconnected": False, "recovered": None},
        {"state": "connected", "transport": "websocket", "reconnected": True, "recovered": False}]
    assert out["u"] == ["ok", {"topic": "u", "offset": 0, "epoch": "e2",
                               "resubscribed": False}]
    since = {"offset": 1, "epoch": "e1"}
    for topic, expected in (("t", [since, since]), ("u", [None, None])):
        assert [c.get("since") for c in connections[1] if c["topic"] == topic] == expected
    assert errors == []


async def test_first_subscribe_deadline_survives_a_reconnect(serve: Any, browser: Any) -> None:
    """A subscribe sent on an open socket that drops before the ack still rejects with
    `timeout` at the caller's deadline, though the new socket never answers it."""
    app = make_app()
    commands: list[Any] = []

    @app.get("/ws/silent")
    async def silent(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection(subprotocols=["pubsocket.v1"])
        if not commands:
            commands.append(orjson.loads(await ws.receive()))
            await ws.close(1011, "scripted drop")
            return

        async def record(command: Any) -> None:
            commands.append(command)

        await _drain(ws, record)  # never answers

    running = await serve(app)
    page, errors = await open_page(browser, running.http + "/")
    out = await page.evaluate("""async (url) => {
      const client = ps.connect(url, {backoff: () => 20, timeout: 5000, heartbeat: 0});
      await until(() => client.state === "connected");
      const start = Date.now();
      const result = await Promise.race([
        outcome(client.subscribe("t", () => {}, {timeout: 400})),
        sleep(3000).then(() => "still pending")]);
      const elapsed = Date.now() - start;
      await sleep(50);
      client.close();
      return {result, elapsed};
    }""", running.ws + "/ws/silent")
    assert out["result"] == ["PubsocketError", "timeout"]
    assert 350 <= out["elapsed"] < 2000
    assert [c["topic"] for c in commands] == ["t", "t"]  # sent on both sockets
    assert errors == []


async def test_late_ack_for_an_abandoned_subscribe_is_undone(serve: Any, browser: Any) -> None:
    """A subscribe given up on timeout that the server acks later is unsubscribed, once,
    instead of staying live on the server with nobody reading it."""
    app = make_app()
    commands: list[Any] = []

    @app.get("/ws/late")
    async def late(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection(subprotocols=["pubsocket.v1"])
        command = orjson.loads(await ws.receive())
        commands.append(command)
        await asyncio.sleep(0.5)  # past the client's 200 ms
        for frame in ({"type": "ack", "id": command["id"], "topic": "t", "offset": 0,
                       "epoch": "e1"}, _message(1)):
            await ws.send(orjson.dumps(frame).decode())

        async def answer(command: Any) -> None:
            commands.append(command)
            await ws.send(orjson.dumps({"type": "ack", "id": command["id"]}).decode())
            await ws.send(orjson.dumps(_message(2)).decode())  # in flight meanwhile

        await _drain(ws, answer)

    running = await serve(app)
    page, errors = await open_page(browser, running.http + "/")
    await page.evaluate("""async (url) => {
      window.t = {got: []};
      window.client = ps.connect(url, {backoff: () => 20, heartbeat: 0});
      t.result = await outcome(client.subscribe("t", (d) => t.got.push(d), {timeout: 200}));
    }""", running.ws + "/ws/late")
    await _until(lambda: len(commands) >= 2)
    out = await page.evaluate("async () => { await sleep(300); client.close(); return t; }")
    assert out == {"got": [], "result": ["PubsocketError", "timeout"]}
    assert commands == [{"action": "subscribe", "topic": "t", "id": 1},
                        {"action": "unsubscribe", "topic": "t", "id": 2}]
    assert errors == []


async def test_urls_resolve_against_the_page_for_any_mount(serve: Any, browser: Any) -> None:
    # A page under a prefix connects with a relative URL (docs/clients.md): "ws/chat"
    # from http://host/rt/ is ws://host/rt/ws/chat; http(s) becomes ws(s).
    running = await serve(make_app())
    page, errors = await open_page(browser, running.http + "/")
    out = await page.evaluate("""() => [
      ps.websocketUrl("ws/chat"), ps.websocketUrl("/rt/ws/chat"),
      ps.websocketUrl("https://example.com/rt/ws/chat"),
      ps.websocketUrl("wss://example.com/x?y=1"),
      new ps.Client("http://example.com/a", {WebSocket: class { close() {} }}).url]""")
    host = running.http.removeprefix("http://")
    assert out == [f"ws://{host}/ws/chat", f"ws://{host}/rt/ws/chat",
                   "wss://example.com/rt/ws/chat", "wss://example.com/x?y=1",
                   "ws://example.com/a"]
    assert errors == []
