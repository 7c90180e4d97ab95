"""Idle connections release websockets' frame protocol and rebuild it on the next bytes
(server/resting.py `rest`, server/frames.py `park`): nothing a client can see changes.

Real server, real clients: a connection that received nothing for a sweep rests; it
keeps receiving deliveries, answers keepalive pings without being rebuilt, and on its
next message works as before — with its size limit, its close-code translation and its
permessage-deflate context. A connection in the middle of a frame or of a fragmented
message never rests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from pubsocket import App, pubsub
from pubsocket.server import Server
from pubsocket.server.frames import FrameProtocol
from pubsocket.server.websocket import WSConnection
from tests.conftest import make_settings

V1 = [Subprotocol("pubsocket.v1")]
# pings every 0.3 s (a lost pong closes within 0.6 s); idle connections rest within 0.5 s
FAST = {"ping_interval": 0.3, "ping_timeout": 0.3}


def app(**changes: Any) -> App:
    application = App(make_settings(**{**FAST, **changes}))
    pubsub("/ws/chat", app=application)
    pubsub("/connection/websocket", app=application, protocol="centrifuge")
    return application


def conns(srv: Any) -> list[WSConnection]:
    server = srv.server
    assert isinstance(server, Server) and server.state is not None
    return list(server.state.websockets)


async def all_rest(srv: Any, within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not all(c.resting for c in conns(srv)):
            await asyncio.sleep(0.02)


async def ack(ws: ClientConnection, cmd_id: int) -> dict[str, Any]:
    async with asyncio.timeout(3):
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == cmd_id:
                assert reply["type"] == "ack", reply
                return dict(reply)


async def test_a_new_subscriber_rests_soon_and_its_protocol_is_freed_at_once(
        serve: Any) -> None:
    # Without a collection: a released protocol must go by its reference count (the
    # parser generator holds it: rest closes the generator), or 10,000 idle
    # connections keep ~1.3 KiB each until a full collection.
    srv = await serve(app(ping_interval=0.0))
    gc.collect()
    gc.disable()
    try:
        async with connect(srv.ws + "/ws/chat", subprotocols=V1) as sub:
            (conn,) = conns(srv)
            assert conn in srv.server.state.fresh  # swept every 0.05 s while new
            await sub.send(json.dumps({"action": "subscribe", "topic": "t", "id": 1}))
            await ack(sub, 1)
            await all_rest(srv)
            assert not srv.server.state.fresh and not srv.server.state.awake
            alive = [o for o in gc.get_objects() if isinstance(o, FrameProtocol)]
            assert alive == []
            await sub.send(json.dumps({"action": "subscribe", "topic": "u", "id": 2}))
            await ack(sub, 2)  # rebuilt, and works
    finally:
        gc.enable()


async def test_an_idle_subscriber_rests_answers_pings_and_works_after(serve: Any) -> None:
    srv = await serve(app())
    async with connect(srv.ws + "/ws/chat", subprotocols=V1) as sub, \
            connect(srv.ws + "/ws/chat", subprotocols=V1) as pub:
        await sub.send(json.dumps({"action": "subscribe", "topic": "t", "id": 1}))
        await ack(sub, 1)
        await all_rest(srv)
        await asyncio.sleep(1.0)  # three ping rounds: pongs taken while resting
        assert all(c.resting for c in conns(srv)) and len(conns(srv)) == 2
        assert not srv.server.state.awake  # the rest sweep walks none of them
        await pub.send(json.dumps({"action": "publish", "topic": "t", "data": 1, "id": 2}))
        await ack(pub, 2)
        assert json.loads(await asyncio.wait_for(sub.recv(), 3))["data"] == 1
        await sub.send(json.dumps({"action": "publish", "topic": "t", "data": 2, "id": 3}))
        got = [json.loads(await asyncio.wait_for(sub.recv(), 3)) for _ in range(2)]
        assert sorted((m["type"], m.get("data")) for m in got) == [("ack", None),
                                                                    ("message", 2)]
        await all_rest(srv)  # and it rests again
    async with asyncio.timeout(3):
        while conns(srv):  # both closed cleanly from resting
            await asyncio.sleep(0.02)


async def test_a_client_closing_a_resting_connection_gets_its_close_back(serve: Any) -> None:
    srv = await serve(app())
    async with connect(srv.ws + "/ws/chat", subprotocols=V1) as ws:
        await all_rest(srv)
        await ws.close(4100, "bye")
        assert ws.close_code == 4100 and ws.close_reason == "bye"


async def test_a_fragmented_message_in_progress_never_rests(serve: Any) -> None:
    srv = await serve(app())

    async def slow_fragments() -> AsyncIterator[str]:
        yield '{"action": "publish", '
        await asyncio.sleep(0.8)  # three rest sweeps with half a message held
        assert not any(c.resting for c in conns(srv))
        yield '"topic": "t", "data": 3, "id": 4}'

    async with connect(srv.ws + "/ws/chat", subprotocols=V1) as ws:
        await all_rest(srv)
        await ws.send(slow_fragments())
        assert (await ack(ws, 4))["type"] == "ack"


async def test_half_a_frame_never_rests(serve: Any) -> None:
    # no ping in this test: the client's pong would land inside the half-written frame
    srv = await serve(app(ping_interval=60.0))
    async with connect(srv.ws + "/ws/chat", subprotocols=V1) as ws:
        await all_rest(srv)
        # A ping: half a whole text frame (compressed or not) would be kept by the fast
        # path in a buffer of its own, the protocol resting (tests/app/test_fast_frames.py)
        frame = bytes((0x89, 0x84)) + b"\0\0\0\0" + b"ping"  # mask key 0
        transport = ws.transport
        transport.write(frame[:3])  # the header and one byte of the key
        await asyncio.sleep(0.8)  # three rest sweeps
        assert not any(c.resting for c in conns(srv))
        transport.write(frame[3:])  # (websockets' client ignores the unsolicited pong)
        await ws.send(json.dumps({"action": "publish", "topic": "t", "data": 5, "id": 6}))
        await ack(ws, 6)


async def test_a_deflate_connection_keeps_its_context_across_rests(serve: Any) -> None:
    srv = await serve(app(compression="deflate", compression_min_size=0))
    async with connect(srv.ws + "/ws/chat", subprotocols=V1, compression="deflate") as ws:
        for n in range(3):  # the client compresses with context takeover
            await ws.send(json.dumps({"action": "subscribe", "topic": f"z{n}", "id": n}))
            await ack(ws, n)
            await all_rest(srv)
        await ws.send(json.dumps({"action": "publish", "topic": "z0", "data": "x" * 200,
                                  "id": 9}))
        got = [json.loads(await asyncio.wait_for(ws.recv(), 3)) for _ in range(2)]
        assert sorted((m["type"], m.get("data")) for m in got) == [("ack", None),
                                                                    ("message", "x" * 200)]


async def test_centrifuge_limits_and_close_codes_survive_a_rest(serve: Any) -> None:
    srv = await serve(app(max_message_size=4096))
    codes = []
    for rest in (False, True):
        async with connect(srv.ws + "/connection/websocket") as ws:
            await ws.send(json.dumps({"id": 1, "connect": {}}))
            assert "connect" in json.loads(await asyncio.wait_for(ws.recv(), 3))
            if rest:
                await all_rest(srv)
            await ws.send("x" * 5000)  # over the limit set after the connect
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 3)
            codes.append((ws.close_code, ws.close_reason))
    assert codes[0] == codes[1] and codes[0][0] != 1000, codes


async def test_the_sweep_over_new_connections_runs_only_while_there_are_some(
        serve: Any) -> None:
    # An idle server must not wake 20 times a second for nothing (server/keepalive.py).
    srv = await serve(app())
    keepalive = srv.server._keepalive
    assert keepalive is not None
    async with connect(srv.ws + "/ws/chat", subprotocols=V1) as sub:
        assert keepalive._fresh_handle is not None  # armed by the new connection
        await sub.send(json.dumps({"action": "subscribe", "topic": "t", "id": 1}))
        await ack(sub, 1)
        await all_rest(srv)
        async with asyncio.timeout(3):
            while srv.server.state.fresh or keepalive._fresh_handle is not None:
                await asyncio.sleep(0.02)
        async with connect(srv.ws + "/ws/chat", subprotocols=V1) as other:
            assert keepalive._fresh_handle is not None  # armed again
            await other.send(json.dumps({"action": "subscribe", "topic": "t", "id": 2}))
            await ack(other, 2)
            await all_rest(srv)
