"""Publish bytes per connection per second (issue 15, finding 3): a real server, real
clients. Over its bucket a publish is refused with `publish_rate` before the broker keeps
anything; the connection stays open and publishes again once the bucket refilled."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.app.test_pubsub import V1, cmd, hub_app, recv_json, subscribed

KB = 1000


def data(n: int, tag: int) -> str:
    return f"{tag:04d}" + "x" * (n - 4)


async def test_over_the_byte_rate_a_publish_is_refused_and_nothing_is_kept(
    serve_any: Any,
) -> None:
    srv = await serve_any(hub_app(publish_byte_rate=100 * KB, publish_byte_burst=200 * KB,
                                  max_message_size=150 * KB))
    url = f"{srv.ws}/ws/chat"
    watcher = await subscribed(url, "big", v1=True)
    async with connect(url, subprotocols=V1, max_size=None) as ws:  # type: ignore[arg-type]
        for i in range(3):  # 3 x 90 kB (each ~90 kB of JSON) against a 200 kB burst
            await ws.send(cmd("publish", "big", data=data(90 * KB, i), id=i))
        replies = [await recv_json(ws) for _ in range(3)]
        assert [r["type"] for r in replies] == ["ack", "ack", "error"]
        assert replies[2]["code"] == "publish_rate" and replies[2]["id"] == 2
        got = [json.loads(await asyncio.wait_for(watcher.recv(), 3))["data"][:4]
               for _ in range(2)]
        assert got == ["0000", "0001"]
        history = await _history(ws, "big")
        assert [p["data"][:4] for p in history] == ["0000", "0001"]  # the refused one: not kept
        await asyncio.sleep(1.0)  # 100 kB refilled: the connection publishes again
        await ws.send(cmd("publish", "big", data=data(90 * KB, 3), id=3))
        assert (await recv_json(ws))["type"] == "ack"
    await watcher.close()


async def test_the_burst_is_never_below_the_message_limit(serve_any: Any) -> None:
    """A burst smaller than max_message_size would refuse the largest messages forever."""
    srv = await serve_any(hub_app(publish_byte_rate=1, publish_byte_burst=1,
                                  max_message_size=100 * KB))
    async with connect(f"{srv.ws}/ws/chat", subprotocols=V1) as ws:  # type: ignore[arg-type]
        await ws.send(cmd("publish", "t", data=data(90 * KB, 0), id=1))
        assert (await recv_json(ws))["type"] == "ack"
        await ws.send(cmd("publish", "t", data=data(20 * KB, 1), id=2))  # ~10 kB are left
        assert (await recv_json(ws))["code"] == "publish_rate"


async def _history(ws: Any, topic: str) -> list[Any]:
    await ws.send(json.dumps({"action": "history", "topic": topic, "limit": 10, "id": "h"}))
    reply = await recv_json(ws)
    assert reply["type"] == "history", reply
    return list(reply["publications"])


async def test_centrifuge_publish_over_the_byte_rate_is_error_111(serve: Any) -> None:
    """The Centrifuge endpoint shares the bucket: 111 "too many requests" (temporary, the
    SDK may retry), the connection stays."""
    from tests.centrifuge.conftest import PATH, cf_app, token
    from tests.centrifuge.test_wire import frame, replies

    srv = await serve(cf_app(publish_byte_rate=1, publish_byte_burst=1,
                             max_message_size=100 * KB))
    async with connect(srv.ws + PATH, max_size=None) as ws:
        await ws.send(frame({"id": 1, "connect": {"token": token("alice")}}))
        await replies(ws, 1)
        await ws.send(frame({"id": 2, "publish": {"channel": "chat:r",
                                                  "data": data(90 * KB, 0)}}))
        await ws.send(frame({"id": 3, "publish": {"channel": "chat:r",
                                                  "data": data(20 * KB, 1)}}))
        first, second = await replies(ws, 2)
        assert first == {"id": 2, "publish": {}}
        assert second["id"] == 3 and second["error"]["code"] == 111
        assert second["error"].get("temporary") is True
        await ws.send(frame({"id": 4, "presence_stats": {"channel": "chat:r"}}))
        assert (await replies(ws, 1))[0]["id"] == 4  # still connected
