"""``/pubsocket.js`` on the HTTP fallback across two nodes, no sticky sessions (issue 19):
two ``pubsocket serve examples/chat`` processes on one real Redis behind the round-robin
proxy (tests/round_robin_proxy.py) with WebSocket upgrades refused. The page's stream
stays on the node that opened it while its command POSTs take turns between the nodes
(the other node hands them over through Redis, hub/relay.py); publications, acks and a
recovery after the proxy cuts every connection all work as on one node."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from typing import Any

from tests.attack.harness import token
from tests.browser.test_client_js import WAIT_MS
from tests.conftest import API_KEY
from tests.integration.spawn import ROOT, spawn
from tests.round_robin_proxy import round_robin_proxy

CHAT = ROOT / "examples" / "chat"


def publish(port: int, topic: str, data: object) -> int:
    """POST /api/publish (the API key) through the proxy, to whichever node is next."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/publish", method="POST",
        data=json.dumps({"topic": topic, "data": data}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        status: int = resp.status
        return status


async def test_the_fallback_needs_no_sticky_sessions(browser: Any, redis_url: str) -> None:
    broker = f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"
    with spawn(CHAT, PUBSOCKET_BROKER=broker) as a, spawn(CHAT, PUBSOCKET_BROKER=broker) as b:
        async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{proxy.port}/")
            acks = await page.evaluate("""async ({url, token}) => {
              const ps = await import("/pubsocket.js");
              const t = window.t = {states: [], got: []};
              const client = window.client = ps.connect(url, {token, backoff: () => 100});
              client.on("state", (e) => t.states.push(e));
              await client.subscribe("room:nodes", (data, m) => t.got.push([data, m.offset]));
              const acks = [];
              for (let n = 1; n <= 10; n++) acks.push(await client.publish("room:nodes", n));
              return acks;
            }""", {"url": f"ws://127.0.0.1:{proxy.port}/ws/chat", "token": token("alice")})
            assert acks == [{"offset": n} for n in range(1, 11)]
            await page.wait_for_function("() => t.got.length === 10", timeout=WAIT_MS)
            assert await page.evaluate("() => client.transport") == "http_stream"
            streams = proxy.backends_of(b"POST /ws/chat?transport=http_stream")
            posts = proxy.backends_of(b"POST /ws/chat?transport=emulation")
            assert len(streams) == 1 and set(posts) == {0, 1}, (streams, posts)

            proxy.cut()  # every open connection, the stream included, dies mid-way
            for n in range(11, 16):  # published meanwhile, on either node
                assert await asyncio.to_thread(publish, proxy.port, "room:nodes", n) == 200
            await page.wait_for_function(
                "() => client.state === 'connected' && t.states.at(-1).reconnected",
                timeout=WAIT_MS)
            await page.evaluate("() => client.publish('room:nodes', 16)")
            await page.wait_for_function("() => t.got.length >= 16", timeout=WAIT_MS)
            await asyncio.sleep(0.3)  # a duplicate would arrive by now
            out = await page.evaluate("() => t")
            assert out["got"] == [[n, n] for n in range(1, 17)]  # each once, in order
            assert out["states"][-1]["recovered"] is True
            assert out["states"][-1]["transport"] == "http_stream"
            assert errors == []
