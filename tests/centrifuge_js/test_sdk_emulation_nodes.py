"""No sticky sessions with the real SDK: centrifuge-js 5.8.0 (npm, under Node) over
HTTP-streaming and SSE, through `tests/round_robin_proxy.py` (each request to the next
node, WebSocket refused) to two servers on one real Redis. The stream lands on one node,
the SDK's POSTs to /emulation on both, and whatever lands on the other node reaches the
session through Redis (`hub/relay.py`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from tests.centrifuge_js.conftest import cf_app, token
from tests.centrifuge_js.harness import connected_with_one, recovers_one, sdk_client
from tests.conftest import Running
from tests.link_proxy import Link
from tests.round_robin_proxy import round_robin_proxy

Serve = Callable[..., Awaitable[Running]]
MODES = [("http_stream", False), ("sse", False), ("http_stream", True)]
IDS = ["http_stream-json", "sse-json", "http_stream-protobuf"]
COMMAND_TIMEOUT_MS = 6000  # the SDK's, in the Redis-cut test (expect waits 8 s at most)


async def two_nodes(serve: Serve, redis_url: str,
                    a_redis: str | None = None) -> tuple[Running, Running]:
    """Two servers (both protocols, emulation on) on one fresh prefix of the test Redis,
    each node's relay channel confirmed; node A reaches Redis at `a_redis` if given."""
    prefix = f"?prefix=test-{uuid.uuid4().hex[:8]}:"
    a = await serve(cf_app(broker=(a_redis or redis_url) + prefix))
    b = await serve(cf_app(broker=redis_url + prefix))
    async with asyncio.timeout(5):
        while not (a.app.hub.relay.ready and b.app.hub.relay.ready):
            await asyncio.sleep(0.01)
    return a, b


def stream_request(name: str) -> bytes:
    """The start of the request line that opens the SDK's stream."""
    return b"POST /connection/http_stream" if name == "http_stream" else b"GET /connection/sse"


@pytest.mark.parametrize(("name", "protobuf"), MODES, ids=IDS)
async def test_sdk_through_a_round_robin_proxy_to_two_nodes(
        serve: Serve, redis_url: str, name: str,
        protobuf: bool) -> None:
    a, b = await two_nodes(serve, redis_url)
    async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}/connection/{name}"
        async with sdk_client("unused", transports=[{"transport": name,
                                                     "endpoint": endpoint}],
                              token=token("alice"), protobuf=protobuf) as sdk:
            sdk.send("connect")
            connected = await sdk.expect("connected")
            assert connected["transport"] == name, connected
            for i in range(3):  # several commands, so POSTs take turns between the nodes
                channel = f"chat:rr{i}"
                sdk.send("sub", channel=channel,
                         opts={"recoverable": True, "positioned": True})
                await sdk.expect("subscribed", lambda e, c=channel: e["channel"] == c)
                res = await sdk.request("publish", channel, data={"n": i})
                assert res["ok"], res
                pub = await sdk.expect("publication", lambda e, c=channel: e["channel"] == c)
                assert pub["data"] == {"n": i}, pub
        home = proxy.backends_of(stream_request(name))[0]
        posts = proxy.backends_of(b"POST /emulation")
        assert 1 - home in posts, proxy.routed  # some POSTs landed on the other node
        owner, other = (a, b) if home == 0 else (b, a)
        assert other.app.hub.relay.stats.sent >= 1
        assert owner.app.hub.relay.stats.fed_routed == other.app.hub.relay.stats.sent


@pytest.mark.parametrize(("name", "protobuf"), MODES, ids=IDS)
async def test_sdk_recovers_on_the_other_node_after_its_stream_is_cut(
        serve: Serve, redis_url: str, name: str,
        protobuf: bool) -> None:
    """The stream is cut; the SDK reconnects through the proxy, to the next node, and
    recovers from Redis's history what was published meanwhile on the first node."""
    a, b = await two_nodes(serve, redis_url)
    async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}/connection/{name}"
        async with sdk_client("unused", transports=[{"transport": name,
                                                     "endpoint": endpoint}],
                              token=token("alice"), protobuf=protobuf, minReconnectDelay=50,
                              maxReconnectDelay=200) as sdk:
            await connected_with_one(sdk, a.app.hub, "chat:cut")
            home = proxy.backends_of(stream_request(name))[0]
            proxy.turn = 1 - home  # the reconnect lands on the other node
            proxy.cut()
            await recovers_one(sdk, a.app.hub, "chat:cut")
            res = await sdk.request("publish", "chat:cut", data={"n": 3})
            assert res["ok"], res
            await sdk.expect("publication", lambda e: e["data"] == {"n": 3})
            assert [p["data"]["n"] for p in sdk.publications("chat:cut")] == [1, 2, 3]
        assert proxy.backends_of(stream_request(name)) == [home, 1 - home], proxy.routed


async def test_sdk_reconnects_at_once_when_its_node_is_cut_from_redis(
        serve: Serve, redis_url: str) -> None:
    """The stream is on node A and stays open, but A's link to Redis is cut. The SDK's
    next command POST lands on B, whose PUBLISH to A reaches nobody: 404, so the SDK
    fails the command, closes the stream and reconnects at once (not at its command
    timeout, the command lost), here to B, and works there."""
    target = urlsplit(redis_url)
    assert target.hostname == "127.0.0.1" and target.port is not None
    async with Link(target.port) as link:
        a_redis = redis_url.replace(f":{target.port}", f":{link.port}")
        a, b = await two_nodes(serve, redis_url, a_redis)
        async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:
            endpoint = f"http://127.0.0.1:{proxy.port}/connection/http_stream"
            async with sdk_client("unused", transports=[{"transport": "http_stream",
                                                         "endpoint": endpoint}],
                                  token=token("alice"), minReconnectDelay=50,
                                  maxReconnectDelay=200, timeout=COMMAND_TIMEOUT_MS) as sdk:
                sdk.send("connect")
                await sdk.expect("connected")
                assert proxy.backends_of(b"POST /connection/http_stream") == [0]  # on A
                await link.close()
                async with asyncio.timeout(5):
                    while a.app.hub.broker.healthy:
                        await asyncio.sleep(0.01)
                proxy.backends, proxy.turn = [b.port], 0  # every request to B from now on
                started = time.monotonic()
                lost = await sdk.request("publish", "chat:cut", data={"n": 1})
                assert (lost["ok"], lost["message"]) == (False, "connection closed"), lost
                await sdk.expect("connecting")
                # ~30 ms here; a 204 left the SDK to its command timeout (6 s, set
                # above) and the command lost: half that leaves seconds for load.
                assert time.monotonic() - started < COMMAND_TIMEOUT_MS / 1000 / 2
                await sdk.expect("connected")
                res = await sdk.request("publish", "chat:cut", data={"n": 2})
                assert res["ok"], res
        assert b.app.hub.relay.stats.unreachable == 1
