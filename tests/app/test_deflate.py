"""permessage-deflate on the native server, with real clients: websockets' client with
and without compression, and raw sockets for offers, RSV1 bits and deflate bombs.

Under ASGI the ASGI server negotiates and compresses (docs/protocol.md "Compression"),
so these run on the native transport only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import zlib
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from tests.app.test_limits import echo_app
from tests.app.test_pubsub import hub_app, recv_json
from tests.centrifuge.conftest import PATH, cf_app
from tests.centrifuge.test_frames import close_code_of, connect_cmd
from tests.conftest import raw_request

KiB = 1024
BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def upgrade(path: str, offer: str | None, protocol: str | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if offer is not None:
        head += f"Sec-WebSocket-Extensions: {offer}\r\n"
    if protocol is not None:
        head += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    return (head + "\r\n").encode()


def extension_of(head: bytes) -> str | None:
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "sec-websocket-extensions":
            return value.strip()
    return None


async def open_deflate(port: int, path: str, offer: str = "permessage-deflate",
                       protocol: str | None = None) -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade(path, offer, protocol))
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer, head


def deflated(payload: bytes, opcode: Opcode = Opcode.TEXT) -> bytes:
    """One masked client frame carrying `payload` deflated (RSV1 set, tail removed)."""
    c = zlib.compressobj(wbits=-15)
    data = (c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    return _masked(opcode, data, rsv1=True)


def _masked(opcode: Opcode, data: bytes, rsv1: bool) -> bytes:
    """A masked client frame; RSV1 set by hand (websockets refuses to serialize it)."""
    frame = Frame(opcode, data).serialize(mask=True, extensions=[])
    return bytes([frame[0] | (0x40 if rsv1 else 0)]) + frame[1:]


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(opcode, RSV1, payload inflated when RSV1 is set) of the next server frame."""
    async with asyncio.timeout(5):
        head = await reader.readexactly(2)
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2))
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8))
        data = await reader.readexactly(n)
    rsv1 = bool(head[0] & 0x40)
    if rsv1:
        data = zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff")
    return head[0] & 0x0F, rsv1, data


@pytest.mark.parametrize(("offer", "answer"), [
    ("permessage-deflate; client_max_window_bits", BOTH),
    ("permessage-deflate; server_max_window_bits=10", BOTH + "; server_max_window_bits=10"),
    ("permessage-deflate; client_max_window_bits=9", BOTH + "; client_max_window_bits=9"),
    ("permessage-deflate; unknown_parameter", None),
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate", BOTH),
    ("x-webkit-deflate-frame", None),
])
async def test_the_offer_is_answered_in_the_101(serve: Any, offer: str,
                                                answer: str | None) -> None:
    srv = await serve(echo_app())
    _reader, writer, head = await open_deflate(srv.port, "/ws/echo", offer)
    assert extension_of(head) == answer
    writer.close()


async def test_a_malformed_offer_is_400(serve: Any) -> None:
    srv = await serve(echo_app())
    answer = await raw_request(srv.port, upgrade("/ws/echo", "permessage-deflate; ;"))
    assert answer.startswith(b"HTTP/1.1 400")


async def test_compression_off_ignores_offers(serve: Any) -> None:
    srv = await serve(echo_app(compression="off"))
    async with connect(srv.ws + "/ws/echo", compression="deflate") as ws:
        assert ws.protocol.extensions == []
        await ws.send("x" * 4 * KiB)
        assert await ws.recv() == "x" * 4 * KiB
    _reader, writer, head = await open_deflate(srv.port, "/ws/echo")
    assert extension_of(head) is None
    writer.close()


async def test_compressed_and_plain_subscribers_get_the_same_messages(serve: Any) -> None:
    srv = await serve(hub_app())
    url = f"{srv.ws}/ws/chat"
    page = [{"id": i, "user": f"user{i % 7}", "text": "see you at the standup"}
            for i in range(40)]
    async with connect(url, compression="deflate", subprotocols=["pubsocket.v1"]) as zipped, \
            connect(url, compression=None, subprotocols=["pubsocket.v1"]) as plain:
        assert zipped.protocol.extensions and not plain.protocol.extensions
        reader, writer, head = await open_deflate(srv.port, "/ws/chat",
                                                  protocol="pubsocket.v1")
        assert extension_of(head) == BOTH
        for ws in (zipped, plain):
            await ws.send(json.dumps({"action": "subscribe", "topic": "room", "id": 1}))
            assert (await recv_json(ws))["type"] == "ack"
        writer.write(_masked(Opcode.TEXT, json.dumps(
            {"action": "subscribe", "topic": "room", "id": 1}).encode(), rsv1=False))
        opcode, rsv1, ack = await read_frame(reader)
        assert (opcode, rsv1) == (Opcode.TEXT, False)  # a short reply: uncompressed
        assert json.loads(ack)["type"] == "ack"

        await plain.send(json.dumps({"action": "publish", "topic": "room", "data": page}))
        await plain.send(json.dumps({"action": "publish", "topic": "room", "data": "hi"}))
        got = [[await recv_json(ws) for _ in range(2)] for ws in (zipped, plain)]
        assert got[0] == got[1]
        assert [m["data"] for m in got[0]] == [page, "hi"]
        opcode, rsv1, big = await read_frame(reader)
        assert rsv1 and json.loads(big)["data"] == page  # compressed on the wire
        opcode, rsv1, small = await read_frame(reader)
        assert not rsv1 and json.loads(small)["data"] == "hi"
        # Inbound compressed messages work too: the compressed client publishes.
        await zipped.send(json.dumps({"action": "publish", "topic": "room", "data": page}))
        assert (await recv_json(plain))["data"] == page
        writer.close()


async def test_echo_compressed_both_ways(serve: Any) -> None:
    srv = await serve(echo_app())
    async with connect(srv.ws + "/ws/echo", compression="deflate",
                       max_size=None) as ws:
        for message in ("short", "y" * 200 * KiB, json.dumps(list(range(5000)))):
            await ws.send(message)
            assert await ws.recv() == message
    reader, writer, _ = await open_deflate(srv.port, "/ws/echo")
    writer.write(deflated(b"z" * 4 * KiB))
    assert await read_frame(reader) == (Opcode.TEXT, True, b"z" * 4 * KiB)
    writer.write(deflated(b"tiny"))  # compressed in, under the minimum size out
    assert await read_frame(reader) == (Opcode.TEXT, False, b"tiny")
    writer.close()


async def test_a_deflate_bomb_closes_1009_and_others_carry_on(serve: Any) -> None:
    srv = await serve(echo_app(max_message_size=64 * KiB))
    reader, writer, _ = await open_deflate(srv.port, "/ws/echo")
    bomb = deflated(b"\0" * 32 * 1024 * KiB)  # 32 MiB of zeros in ~32 KiB
    assert len(bomb) < 64 * KiB
    writer.write(bomb)
    assert await close_code_of(reader, within=5) == 1009
    writer.close()
    # Just under the limit inflated is fine, and other clients never noticed.
    reader, writer, _ = await open_deflate(srv.port, "/ws/echo")
    writer.write(deflated(b"a" * (64 * KiB - 1)))
    assert await read_frame(reader) == (Opcode.TEXT, True, b"a" * (64 * KiB - 1))
    writer.close()


async def test_a_fragmented_bomb_closes_1009(serve: Any) -> None:
    srv = await serve(echo_app(max_message_size=64 * KiB))
    reader, writer, _ = await open_deflate(srv.port, "/ws/echo")
    c = zlib.compressobj(wbits=-15)
    first = c.compress(b"\0" * 48 * KiB) + c.flush(zlib.Z_SYNC_FLUSH)
    rest = (c.compress(b"\0" * 48 * KiB) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    head = Frame(Opcode.TEXT, first, fin=False).serialize(mask=True, extensions=[])
    writer.write(bytes([head[0] | 0x40]) + head[1:])
    writer.write(Frame(Opcode.CONT, rest).serialize(mask=True, extensions=[]))
    assert await close_code_of(reader, within=5) == 1009
    writer.close()


async def test_the_pre_connect_limit_counts_inflated_bytes(serve: Any) -> None:
    # Centrifuge: 16 KiB until connect. A 100 KiB connect compresses to far less than
    # 16 KiB on the wire; inflated, it is over the limit (1009 -> Centrifuge's 3501).
    srv = await serve(cf_app())
    reader, writer, _ = await open_deflate(srv.port, PATH)
    connect_frame = json.dumps(connect_cmd(pad=100 * KiB)).encode()
    small = deflated(connect_frame)
    assert len(small) < 4 * KiB
    writer.write(small)
    assert await close_code_of(reader, within=5) == 3501
    writer.close()
