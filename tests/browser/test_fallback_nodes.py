"""``/pubsocket.js`` on the HTTP fallback across two nodes, no sticky sessions (issue 19):
two ``pubsocket serve examples/chat`` processes on one real Redis behind the round-robin
proxy (tests/round_robin_proxy.py) with WebSocket upgrades refused. The page's stream
stays on the node that opened it while its command POSTs take turns between the nodes
(the other node hands them over through Redis, hub/relay.py); publications, acks and a
recovery after the proxy cuts every connection all work as on one node. A stream whose
node is cut from Redis is left at the first command POST the other node cannot hand
over (404)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis

from tests.attack.harness import token
from tests.browser.test_client_js import WAIT_MS
from tests.conftest import API_KEY
from tests.integration.spawn import ROOT, spawn
from tests.link_proxy import Link
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


async def test_a_node_cut_from_redis_is_left_at_once(browser: Any, redis_url: str) -> None:
    """The page's stream stays open on its node, but that node's link to Redis is cut
    (each node reaches Redis through a TCP proxy of its own, tests/link_proxy.py). The
    next command POST lands on the other node, whose PUBLISH reaches nobody: 404, so
    the client fails that call at once (not at its 10 s call timeout), reconnects to
    the other node, recovers, and publishes there."""
    target = urlsplit(redis_url)
    assert target.hostname == "127.0.0.1" and target.port is not None
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    async with Link(target.port) as link_a, Link(target.port) as link_b:
        links = [link_a, link_b]
        urls = [redis_url.replace(f":{target.port}", f":{link.port}") + f"?prefix={prefix}"
                for link in links]
        with spawn(CHAT, PUBSOCKET_BROKER=urls[0]) as a, \
                spawn(CHAT, PUBSOCKET_BROKER=urls[1]) as b:
            async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{proxy.port}/")
                assert await page.evaluate("""async ({url, token}) => {
                  const ps = await import("/pubsocket.js");
                  const t = window.t = {states: [], got: []};
                  const client = window.client = ps.connect(url, {token, backoff: () => 50});
                  client.on("state", (e) => t.states.push(e));
                  await client.subscribe("room:cut", (data) => t.got.push(data));
                  return await client.publish("room:cut", 1);
                }""", {"url": f"ws://127.0.0.1:{proxy.port}/ws/chat",
                       "token": token("alice")}) == {"offset": 1}
                [home] = proxy.backends_of(b"POST /ws/chat?transport=http_stream")
                await links[home].close()  # its Redis connections aborted, new ones refused
                redis = Redis.from_url(redis_url)
                try:  # until Redis dropped that node's channel ($n:<node>): one is left
                    async with asyncio.timeout(10):
                        while len(await redis.pubsub_channels(f"{prefix}$n:*")) != 1:
                            await asyncio.sleep(0.02)
                finally:
                    await redis.aclose()
                proxy.backends, proxy.turn = [(a, b)[1 - home].port], 0  # all to the other
                failed = await page.evaluate("""async () => {
                  const started = Date.now();
                  try { await client.publish("room:cut", 2); return "published"; }
                  catch (err) { return [err.code, Date.now() - started]; }
                }""")
                assert failed[0] == "disconnected" and failed[1] < 1500, failed
                await page.wait_for_function(
                    "() => client.state === 'connected' && t.states.at(-1).reconnected",
                    timeout=WAIT_MS)
                assert await page.evaluate("() => client.publish('room:cut', 3)") == (
                    {"offset": 2})
                await page.wait_for_function("() => t.got.length >= 2", timeout=WAIT_MS)
                out = await page.evaluate("() => t")
                assert out["got"] == [1, 3]  # 2 was refused, never published
                assert out["states"][-1]["recovered"] is True
