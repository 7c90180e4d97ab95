"""The pubsocket.v1 HTTP fallback with no sticky sessions: two real servers on one real
Redis behind `tests/round_robin_proxy.py` (each request to the next node, WebSocket
refused). The stream lands on one node; the POSTed commands alternate between the two,
and those on the other node reach the session through Redis (`hub/relay.py`)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from tests.fallback.client import HttpStream
from tests.fallback.test_v1_fallback import EMULATE, bearer, emulate, open_stream, v1_app
from tests.round_robin_proxy import round_robin_proxy


async def test_commands_posted_to_either_node_reach_the_stream(
        serve: Any, redis_url: str) -> None:
    broker = f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"
    a, b = await serve(v1_app(broker=broker)), await serve(v1_app(broker=broker))
    async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:
        stream, hello = await open_stream(proxy.port)  # node A: the first request
        assert hello["node"] == a.app.hub.relay.node
        status, _, _ = await emulate(proxy.port, hello, [  # node B, through Redis
            {"action": "subscribe", "topic": "room", "id": 1}])
        assert status == 204
        await stream.until({"type": "ack", "id": 1})
        for i in range(2, 8):  # A, B, A, ...: each a publish of its own
            status, _, _ = await emulate(proxy.port, hello, [
                {"action": "publish", "topic": "room", "data": {"n": i}, "id": i}])
            assert status == 204
        lines = [await stream.line() for _ in range(12)]  # 6 acks, 6 deliveries
        assert sorted(m["id"] for m in lines if m["type"] == "ack") == list(range(2, 8))
        assert sorted(m["data"]["n"] for m in lines if m["type"] == "message") == (
            list(range(2, 8)))
        assert proxy.backends_of(b"POST /ws/chat?transport=emulation") == [1, 0] * 3 + [1]
        assert b.app.hub.relay.stats.sent == 4 and a.app.hub.relay.stats.fed_routed == 4
        assert a.app.hub.relay.stats.fed_local == 3
        # The session's node answers for it; the other node cannot know and hands over.
        gone = {**hello, "session": "x" * 24}
        proxy.turn = 0
        assert (await emulate(proxy.port, gone, []))[0] == 404
        assert (await emulate(proxy.port, gone, []))[0] == 204
        await stream.close()


async def test_a_broker_outage_on_the_routing_node_is_503(serve: Any, redis_url: str) -> None:
    """B cannot hand the command to Redis: 503 (the client reconnects), never a 204
    for a command that went nowhere. Simulated by closing B's broker."""
    broker = f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"
    a, b = await serve(v1_app(broker=broker)), await serve(v1_app(broker=broker))
    stream, hello = await open_stream(a.port)
    await b.app.hub.broker.close()
    client = await HttpStream.post(b.port, EMULATE, orjson.dumps(
        {**hello, "data": [{"action": "subscribe", "topic": "room", "id": 1}]}), bearer())
    assert client.status == 503, await client.body()
    await client.close()
    await stream.close()
