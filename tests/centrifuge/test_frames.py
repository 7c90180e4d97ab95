"""Frames and commands on the Centrifuge endpoint (issue 15): what a frame may cost.

Before connect: messages at most `connect_message_size` (refused from the frame header,
fragments counted together), no empty frames, closed as stale within `connect_timeout`.
Any frame: at most `max_frame_commands` lines, one rate-limit token per line, both
charged before a single command is parsed. Hostile frames go out over raw sockets;
centrifuge-python proves the SDK's own frames still pass.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from centrifuge import Client
from tests.centrifuge.conftest import PATH, Events, cf_app, client_events, sub_events, token
from tests.centrifuge.test_wire import closed_with, frame, replies

KiB = 1024


async def raw_upgrade(port: int, path: str = PATH) -> tuple[asyncio.StreamReader,
                                                            asyncio.StreamWriter]:
    """A WebSocket opened by hand: the 101 is read, frames are the caller's business."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def masked(payload: bytes, opcode: Opcode = Opcode.TEXT, fin: bool = True) -> bytes:
    """One client frame (masked, as RFC 6455 requires; websockets' C masking)."""
    return Frame(opcode, payload, fin=fin).serialize(mask=True, extensions=[])


async def close_code_of(reader: asyncio.StreamReader, within: float) -> int:
    """The code of the server's close frame (its frames are unmasked), read within
    `within` seconds; other frames before it are skipped."""
    async with asyncio.timeout(within):
        while True:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2))
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8))
            body = await reader.readexactly(length)
            if head[0] & 0x0F == Opcode.CLOSE:
                return int.from_bytes(body[:2])


def connect_cmd(sub: str = "alice", pad: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"token": token(sub)}
    if pad:
        body["data"] = {"pad": "x" * pad}  # valid JSON the server keeps: only size differs
    return {"id": 1, "connect": body}


async def test_before_connect_messages_are_small_and_after_it_large(serve_any: Any) -> None:
    # 16 KiB until the connect succeeds: a larger (valid) connect is refused with the
    # protocol's close for a too-big message, on both transports.
    srv = await serve_any(cf_app())
    async with connect(srv.ws + PATH, max_size=None) as ws:
        await ws.send(json.dumps(connect_cmd(pad=17 * KiB)))
        assert await closed_with(ws) == (3501, "bad request")
    async with connect(srv.ws + PATH, max_size=None) as ws:
        await ws.send(json.dumps(connect_cmd(pad=15 * KiB)))
        assert "connect" in (await replies(ws, 1))[0]
        # Connected: the full max_message_size (1 MiB) applies again.
        await ws.send(frame({"id": 2, "publish": {"channel": "chat:big",
                                                  "data": "y" * 512 * KiB}}))
        assert await replies(ws, 1) == [{"id": 2, "publish": {}}]


async def test_a_partial_frame_before_connect_is_refused_from_its_header(
        serve: Any) -> None:
    # A header announcing 1 MiB and a trickle of its payload: nothing of it is buffered,
    # the close comes at once (not at the connect deadline).
    srv = await serve(cf_app())
    reader, writer = await raw_upgrade(srv.port)
    try:
        whole = masked(b"x" * 1024 * KiB)
        writer.write(whole[:4 * KiB])
        # 3 s: slack for a loaded CI box, still well before the 5 s connect deadline
        # (connect_timeout's default), where a buffering server would close 3502 instead.
        assert await close_code_of(reader, within=3) == 3501
    finally:
        writer.close()


async def test_fragments_before_connect_count_together(serve: Any) -> None:
    srv = await serve(cf_app())
    reader, writer = await raw_upgrade(srv.port)
    try:
        writer.write(masked(b"x" * 8 * KiB, fin=False))
        for _ in range(8):  # 72 KiB in all: refused past 16 KiB
            writer.write(masked(b"x" * 8 * KiB, Opcode.CONT, fin=False))
        assert await close_code_of(reader, within=3) == 3501  # before the 5 s deadline
    finally:
        writer.close()


async def test_a_frame_over_the_command_cap_is_refused_before_any_runs(serve: Any) -> None:
    # Rate limit off: only the cap stands. 256 publishes in a frame run; 257 close the
    # connection and none of them is published.
    srv = await serve(cf_app(rate_limit=0))
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(connect_cmd()))
        await replies(ws, 1)
        await ws.send(frame(*[{"id": n, "publish": {"channel": "chat:ok", "data": n}}
                              for n in range(2, 258)]))
        assert len(await replies(ws, 256)) == 256
        await ws.send(frame(*[{"id": n, "publish": {"channel": "chat:cap", "data": n}}
                              for n in range(2, 259)]))
        assert await closed_with(ws) == (3501, "bad request")
    assert (await srv.app.hub.history("chat:cap", 0, 10)).publications == []


async def test_every_line_costs_a_token_before_parsing(serve: Any) -> None:
    # 100/s, burst 200, no cap: a publish followed by 250 pong lines is 251 tokens, so
    # the frame is refused (3013) before the publish is parsed, let alone run.
    srv = await serve(cf_app(rate_limit=100, rate_burst=200, max_frame_commands=0))
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(connect_cmd()))
        await replies(ws, 1)
        lines = [{"id": 2, "publish": {"channel": "chat:t", "data": 1}}] + [{}] * 250
        await ws.send(frame(*lines))
        assert await closed_with(ws) == (3013, "too many requests")
    assert (await srv.app.hub.history("chat:t", 0, 10)).publications == []


async def test_an_empty_frame_before_connect_closes(serve_any: Any) -> None:
    srv = await serve_any(cf_app())
    async with connect(srv.ws + PATH) as ws:
        await ws.send("{}")  # a pong, though no ping was sent: not a connect
        assert await closed_with(ws) == (3501, "bad request")


@pytest.mark.parametrize("ping", [0, 25])
async def test_a_connection_without_connect_is_closed_within_the_connect_timeout(
        serve_any: Any, ping: float) -> None:
    srv = await serve_any(cf_app(centrifuge_ping=ping, connect_timeout=1.0))
    opened = time.monotonic()
    async with connect(srv.ws + PATH) as idle:
        assert await closed_with(idle) == (3502, "stale")
    took = time.monotonic() - opened
    # Between half the timeout and the timeout, + slack for a loaded CI box (the
    # handshake is inside `took`). Load only lengthens `took`, so a close at the ping
    # (25 s) or after two checks of a whole timeout each (2 s) still fails.
    assert 0.4 < took < 1.9, took


async def test_the_sdk_connects_and_subscribes_many_channels_in_its_first_frames(
        serve: Any) -> None:
    # centrifuge-python with 40 subscriptions made before it connects: its connect and
    # subscribes fit the pre-connect limit, the cap and the burst.
    srv = await serve(cf_app())
    events = Events()
    client = Client(srv.ws + PATH, events=client_events(events), token=token("alice"),
                    timeout=5)
    subs = []
    for n in range(40):
        sub_ev = Events()
        sub = client.new_subscription(f"chat:many{n}", events=sub_events(sub_ev))
        await sub.subscribe()
        subs.append((sub, sub_ev))
    await client.connect()
    try:
        await events.next("connected")
        for _, sub_ev in subs:
            await sub_ev.next("subscribed")
        await srv.app.hub.publish("chat:many39", {"n": 39})
        assert (await subs[-1][1].next("publication")).pub.data == {"n": 39}
    finally:
        await client.disconnect()
