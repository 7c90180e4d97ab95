"""The pubsocket.v1 heartbeat (issue 19) with real parts: a real server, the Python
client and raw websockets clients, and a black-hole proxy (tests/blackhole.py) that
stops forwarding without closing anything, as a NAT timeout does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from pubsocket import client as pc
from pubsocket.client import Gap, Message
from tests.blackhole import black_hole
from tests.client.helpers import RecordingBackoff, chat_app, take, token, until, url
from tests.conftest import API_KEY

V1 = [Subprotocol("pubsocket.v1")]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def frames_for(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every frame `ws` receives during `seconds`."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                got.append(orjson.loads(await ws.recv()))
        except TimeoutError:
            break
    return got


async def test_python_client_leaves_connected_within_the_bound_and_recovers_everything(
        serve: Any) -> None:
    srv = await serve(chat_app(heartbeat=1))  # a dead link is called after 1 + 1 s
    states: list[tuple[float, str]] = []
    async with black_hole(srv.port) as hole, \
            pc.connect(f"ws://127.0.0.1:{hole.port}/ws/chat", token=API_KEY, open_timeout=1,
                       backoff=RecordingBackoff(0.2),
                       on_state=lambda s: states.append((time.monotonic(), s))) as client, \
            pc.connect(url(srv), token=token("bob")) as publisher:
        sub = await client.subscribe("room")
        for n in range(1, 4):
            await publisher.publish("room", n)
        assert [e.data for e in await take(sub, 3) if isinstance(e, Message)] == [1, 2, 3]
        await asyncio.sleep(1.5)  # idle, yet kept connected by the pings
        assert client.state == "connected"

        hole.hold()
        held = time.monotonic()
        for n in range(4, 9):  # published while the client's path is a black hole
            await publisher.publish("room", n)
        await until(lambda: client.state != "connected", timeout=6)
        left = states[-1][0] - held
        assert states[-1][1] == "reconnecting"
        assert left <= 2.0 + 0.8, f"left 'connected' {left:.2f} s after the link died"
        await asyncio.sleep(1.5)  # reconnect attempts into the black hole time out
        assert client.state == "reconnecting"

        hole.heal()
        await until(lambda: client.state == "connected", timeout=8)
        await publisher.publish("room", 9)
        events = await take(sub, 6, timeout=5)
        assert not any(isinstance(e, Gap) for e in events)
        assert [(e.data, e.offset) for e in events if isinstance(e, Message)] == [
            (n, n) for n in range(4, 10)]  # every one exactly once, in order
        assert client.state == "connected"


async def test_pings_come_only_when_asked_and_at_most_one_per_interval(serve_any: Any) -> None:
    """Native and ASGI alike: a client that asked gets one ping per interval however
    often it asks; one that never asked (any client written before the heartbeat, plain
    mode included) gets nothing new."""
    srv = await serve_any(chat_app(heartbeat=0.5))
    ws_url = url(srv)
    async with ws_connect(ws_url, subprotocols=V1, additional_headers=AUTH) as asker, \
            ws_connect(ws_url, subprotocols=V1, additional_headers=AUTH) as old, \
            ws_connect(ws_url, additional_headers=AUTH) as plain:
        for i in range(1, 21):  # asking again must not make the server ping more
            await asker.send(orjson.dumps({"action": "heartbeat", "id": i}).decode())
        await old.send('{"action":"subscribe","topic":"room","id":1}')
        await plain.send('{"action":"subscribe","topic":"room"}')
        seen = await frames_for(asker, 2.2)
        assert [f for f in seen if f["type"] == "ack"] == [
            {"type": "ack", "id": i, "interval": 0.5} for i in range(1, 21)]
        pings = [f for f in seen if f["type"] == "ping"]
        assert pings and set(map(orjson.dumps, pings)) == {b'{"type":"ping"}'}
        assert 3 <= len(pings) <= 5, len(pings)  # 2.2 s / 0.5 s, one per sweep
        await asker.send('{"action":"publish","topic":"room","data":1,"id":"p"}')
        old_seen = await frames_for(old, 0.5)
        assert [f for f in old_seen if f["type"] != "join"] == [  # (chat_app has presence)
            {"type": "ack", "id": 1, "topic": "room", "offset": 0, "epoch": _Epoch()},
            {"type": "message", "topic": "room", "offset": 1, "data": 1}]
        assert [orjson.loads(await plain.recv())] == [1]  # the seed's json(data), no ping


class _Epoch:
    """Equal to any non-empty epoch string."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)


async def test_a_server_with_the_heartbeat_off_or_without_it_keeps_clients_connected(
        serve: Any) -> None:
    srv = await serve(chat_app(heartbeat=0))
    async with ws_connect(url(srv), subprotocols=V1, additional_headers=AUTH) as raw:
        await raw.send('{"action":"heartbeat","id":1}')
        assert orjson.loads(await raw.recv()) == {"type": "ack", "id": 1, "interval": 0}
        assert await frames_for(raw, 0.5) == []
    async with pc.connect(url(srv), token=API_KEY, timeout=0.5) as client:
        await asyncio.sleep(1.5)  # > timeout: an answer of 0 turned the watch off
        assert client.state == "connected"
        assert client._silence is None


async def test_the_heartbeat_option_sets_the_bound_and_zero_turns_the_watch_off(
        serve: Any) -> None:
    """`heartbeat=4` on a server pinging every 1 s: a black hole is called 3-4 s after
    the cut (4 s after the last ping), not within the default 2 s; `heartbeat=0` never
    asks, so a black hole goes unnoticed (the documented price of turning it off)."""
    srv = await serve(chat_app(heartbeat=1))
    async with black_hole(srv.port) as hole:
        hole_url = f"ws://127.0.0.1:{hole.port}/ws/chat"
        states: list[tuple[float, str]] = []
        async with pc.connect(hole_url, token=API_KEY, heartbeat=4, open_timeout=1,
                              backoff=RecordingBackoff(0.2),
                              on_state=lambda s: states.append((time.monotonic(), s))
                              ) as client, \
                pc.connect(hole_url, token=API_KEY, heartbeat=0) as unwatched:
            await client.subscribe("room")
            await unwatched.subscribe("room")
            assert client._silence == 4 and unwatched._silence is None
            hole.hold()
            held = time.monotonic()
            await until(lambda: client.state != "connected", timeout=7)
            left = states[-1][0] - held
            assert 2.6 <= left <= 4.0 + 0.8, f"left 'connected' {left:.2f} s after the cut"
            assert unwatched.state == "connected"
            hole.heal()
            await until(lambda: client.state == "connected", timeout=8)
