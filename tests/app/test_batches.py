"""Fan-out through shared batches (hub/wire.py `Batch`) keeps every order the one-frame-
per-delivery path kept.

A native connection gets one shared batch per topic group and loop tick; later
publications of the tick are appended to it. These tests put several commands in **one**
TCP write, so the server handles them in one read (one tick), and check that a reply,
a subscribe or an unsubscribe between two publications lands exactly where it did
before: nobody receives a publication from before it subscribed or after it left, and
a v1 ack stays between the publications it came between.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

from websockets.frames import Frame, Opcode

from pubsocket import App, pubsub
from tests.app.test_pubsub import cmd, recv_json, subscribed
from tests.conftest import make_settings


class RawClient:
    """A WebSocket client on a plain stream, so several frames go out in one write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, subprotocol: str | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
        writer.write((f"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"{extra}\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_all(self, *messages: str) -> None:
        """Every message in one TCP write."""
        self.writer.write(b"".join(Frame(Opcode.TEXT, m.encode()).serialize(mask=True)
                                   for m in messages))

    async def recv(self, timeout: float = 3.0) -> Any:
        """The next text message (server frames are unmasked and short here)."""
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        assert head[0] == 0x81, head  # FIN + text
        size = head[1]
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        return json.loads(await self.reader.readexactly(size))

    def close(self) -> None:
        self.writer.close()


def app() -> App:
    application = App(make_settings(rate_limit=0, publish_byte_rate=0))
    pubsub("/ws/chat", app=application)
    return application


async def test_publications_of_one_read_reach_every_subscriber_in_order(serve: Any) -> None:
    srv = await serve(app())
    readers = [await subscribed(f"{srv.ws}/ws/chat", "t") for _ in range(3)]
    pub = await RawClient.connect(srv.port)
    try:
        pub.send_all(*(cmd("publish", "t", data=i) for i in range(50)))
        for ws in readers:
            assert [await recv_json(ws) for _ in range(50)] == list(range(50))
    finally:
        pub.close()
        for ws in readers:
            await ws.close()


async def test_a_v1_ack_stays_between_the_publications_it_came_between(serve: Any) -> None:
    srv = await serve(app())
    other = await subscribed(f"{srv.ws}/ws/chat", "t")
    client = await RawClient.connect(srv.port, "pubsocket.v1")
    try:
        client.send_all(cmd("subscribe", "t", id="s"))
        assert (await client.recv())["type"] == "ack"
        client.send_all(*(cmd("publish", "t", data=i, id=f"p{i}") for i in range(3)))
        got = [await client.recv() for _ in range(6)]
        kinds = [(m["type"], m.get("data", m.get("id"))) for m in got]
        assert kinds == [("message", 0), ("ack", "p0"), ("message", 1), ("ack", "p1"),
                         ("message", 2), ("ack", "p2")]
        assert [await recv_json(other) for _ in range(3)] == [0, 1, 2]
    finally:
        client.close()
        await other.close()


async def test_a_subscribe_between_two_publications_gets_only_the_later_one(
        serve: Any) -> None:
    srv = await serve(app())
    reader = await subscribed(f"{srv.ws}/ws/chat", "t")
    late = await RawClient.connect(srv.port)
    try:
        late.send_all(cmd("publish", "t", data="before"), cmd("subscribe", "t"),
                      cmd("publish", "t", data="after"))
        assert await late.recv() == "after"
        assert [await recv_json(reader) for _ in range(2)] == ["before", "after"]
    finally:
        late.close()
        await reader.close()


async def test_an_unsubscribe_between_two_publications_stops_the_later_one(
        serve: Any) -> None:
    srv = await serve(app())
    reader = await subscribed(f"{srv.ws}/ws/chat", "t")
    leaver = await RawClient.connect(srv.port)
    try:
        leaver.send_all(cmd("subscribe", "t"))
        reader_probe = await RawClient.connect(srv.port)
        reader_probe.send_all(cmd("publish", "t", data="ready"))
        assert await leaver.recv() == "ready"  # the subscription is live
        assert await recv_json(reader) == "ready"
        reader_probe.close()
        leaver.send_all(cmd("publish", "t", data="kept"), cmd("unsubscribe", "t"),
                        cmd("publish", "t", data="not for the leaver"),
                        cmd("subscribe", "u"), cmd("publish", "u", data="next"))
        assert await leaver.recv() == "kept"
        assert await leaver.recv() == "next"  # nothing of t after it left
        assert [await recv_json(reader) for _ in range(2)] == ["kept", "not for the leaver"]
    finally:
        leaver.close()
        await reader.close()
