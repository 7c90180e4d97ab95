"""Every HTTP and WebSocket limit, driven with raw sockets and real clients.

The WebSocket limits and refusals run on both transports (`serve_any`). Native only,
because under ASGI the server, not pubsocket, owns them: the HTTP head limits and the
head timeout (uvicorn's parser answers those), and `max_fragments` (ASGI hands over
whole messages, so fragments cannot be counted).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, Websocket
from tests.conftest import API_KEY, make_settings, raw_request

UPGRADE = ("GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")


def echo_app(**changes: Any) -> App:
    app = App(make_settings(**changes))

    @app.get("/ws/echo")
    async def echo(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        async for message in ws:
            await ws.send(message)

    @app.post("/upload")
    async def upload(request: Any, response: Any) -> Any:
        return response({"size": len(request.raw_body)})

    return app


def masked_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(UPGRADE.format(key=key).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_close(reader: asyncio.StreamReader, within: float = 5.0) -> int:
    """Read frames until a close frame (bounded by `within` seconds); return its code."""
    async with asyncio.timeout(within):
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            data = await reader.readexactly(n)
            if b0 & 0x0F == 0x8:
                code: int = struct.unpack("!H", data[:2])[0]
                return code


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
            f"X-H{i}: {'v' * 200}\r\n".encode() for i in range(90)) + b"\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
            f"X-{i}: v\r\n".encode() for i in range(101)) + b"\r\n", b"431"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", b"413"),
    ],
    ids=["header-line", "head-size", "header-count", "url", "malformed", "content-length"],
)
async def test_http_limits(serve: Any, request_bytes: bytes, status: bytes) -> None:
    srv = await serve(echo_app())
    answer = await raw_request(srv.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert b'"error"' in answer


async def test_chunked_body_over_limit_is_413(serve_any: Any) -> None:
    srv = await serve_any(echo_app(max_body_size=1000))
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    raw = (f"POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
           "Transfer-Encoding: chunked\r\n\r\n").encode() + chunk * 3
    assert (await raw_request(srv.port, raw)).startswith(b"HTTP/1.1 413")


async def test_request_head_timeout_closes(serve: Any) -> None:
    srv = await serve(echo_app(handshake_timeout=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET / HTTP/1.1\r\n")  # never finishes the head
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()


async def test_non_upgrade_request_to_websocket_route_is_426(serve_any: Any) -> None:
    srv = await serve_any(echo_app())
    answer = await raw_request(srv.port, b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 426")


async def test_bad_handshake_is_400(serve_any: Any) -> None:
    srv = await serve_any(echo_app())
    bad = UPGRADE.format(key="not-base64!").encode()
    assert (await raw_request(srv.port, bad)).startswith(b"HTTP/1.1 400")


async def test_message_too_big_is_1009_before_buffering(serve_any: Any) -> None:
    srv = await serve_any(echo_app())
    reader, writer = await open_raw(srv.port)
    # Announce 2 MiB but send only the header: the server must refuse on the length alone.
    writer.write(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2 * 1024 * 1024) + os.urandom(4))
    assert await read_close(reader) == 1009
    writer.close()


async def test_too_many_fragments_is_1009(serve: Any) -> None:
    srv = await serve(echo_app(max_fragments=10))
    reader, writer = await open_raw(srv.port)
    writer.write(masked_frame(0x1, b"a", fin=False))
    for _ in range(12):
        writer.write(masked_frame(0x0, b"a", fin=False))
    assert await read_close(reader) == 1009
    writer.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (masked_frame(0x3, b"x"), 1002),  # reserved opcode
        (masked_frame(0x1, b"x", rsv=0x40), 1002),  # RSV1 without an extension
        (bytes([0x81, 0x01]) + b"x", 1002),  # unmasked client frame
        (masked_frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8 in one frame
        (masked_frame(0x1, b"\xce", fin=False) + masked_frame(0x0, b"\xff"), 1007),
        (masked_frame(0x0, b"x"), 1002),  # continuation without a start
    ],
    ids=["opcode", "rsv", "unmasked", "utf8", "utf8-fragmented", "orphan-continuation"],
)
async def test_protocol_errors_get_a_close_frame(serve_any: Any, frame: bytes, code: int) -> None:
    srv = await serve_any(echo_app())
    reader, writer = await open_raw(srv.port)
    writer.write(frame)
    assert await read_close(reader) == code
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then TCP closes
    writer.close()


async def test_ping_timeout_closes_a_silent_peer(serve_any: Any) -> None:
    srv = await serve_any(echo_app(ping_interval=0.2, ping_timeout=0.2))
    reader, writer = await open_raw(srv.port)  # a raw peer never answers pings
    assert await read_close(reader) == 1011
    writer.close()


async def test_pings_answered_keep_the_connection(serve_any: Any) -> None:
    srv = await serve_any(echo_app(ping_interval=0.1, ping_timeout=0.5))
    async with connect(f"{srv.ws}/ws/echo") as ws:  # websockets answers pings itself
        await asyncio.sleep(0.6)
        await ws.send("still here")
        assert await ws.recv() == "still here"


async def test_peer_close_code_is_echoed(serve_any: Any) -> None:
    srv = await serve_any(echo_app())
    async with connect(f"{srv.ws}/ws/echo") as ws:
        await ws.close(4000, "bye")
    assert ws.close_code == 4000


async def test_large_fragmented_message_round_trips(serve_any: Any) -> None:
    srv = await serve_any(echo_app())
    async with connect(f"{srv.ws}/ws/echo", max_size=2**21) as ws:
        payload = "é" * 300_000
        await ws.send(chunk for chunk in (payload[i:i + 1000] for i in range(0, len(payload),
                                                                                   1000)))
        assert await ws.recv() == payload
        with pytest.raises(websockets.ConnectionClosed):
            await ws.send("x" * (1024 * 1024 + 1))
            await ws.recv()
    assert ws.close_code == 1009
