"""The native HTTP transport's parse and write bounds (issue 15), with raw sockets.

A request's head is counted apart from its body however TCP cuts the bytes (a 30 KB
publish arriving with its head in one segment was a 431), and a response the client
never reads is aborted after the write timeout instead of being held forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from typing import Any

import orjson
import pytest

from pubsocket import App, noauth
from tests.conftest import make_settings

BIG = 30_000


def upload_app(**changes: Any) -> App:
    app = App(make_settings(**changes))

    @app.post("/upload")
    @noauth()
    async def upload(request: Any, response: Any) -> Any:
        return response({"size": len(request.raw_body)})

    @app.get("/big")
    async def big(request: Any, response: Any) -> Any:
        return response(b"x" * (16 * 1024 * 1024))

    return app


def post(body: bytes, extra: str = "") -> bytes:
    return (f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head, await reader.readexactly(length)


@pytest.mark.parametrize("cuts", [
    (),  # head and body in one segment
    (1,), (7, 8, 9), (30,),  # odd splits inside the request line and head
    (-BIG - 2, -BIG, -1),  # around the blank line, and the body's last byte alone
    tuple(range(1, 200, 13)),
])
async def test_body_with_head_in_any_segmentation(serve: Any, cuts: tuple[int, ...]) -> None:
    running = await serve(upload_app())
    body = orjson.dumps({"topic": "t", "data": "a" * (BIG - 30)})
    data = post(body)
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.transport.get_extra_info("socket").setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for start, end in itertools.pairwise(points):
            writer.write(data[start:end])
            await writer.drain()
            await asyncio.sleep(0.01)  # separate segments, separate reads
        async with asyncio.timeout(5):
            head, answer = await read_response(reader)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert orjson.loads(answer) == {"size": len(body)}


async def test_large_head_is_still_431_when_it_comes_with_a_body(serve: Any) -> None:
    running = await serve(upload_app())
    headers = "".join(f"X-H{i}: {'v' * 200}\r\n" for i in range(90))  # 18 KB of head
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(post(b"{}" + b" " * 100, headers))
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]


async def _unread(port: int, request: bytes) -> tuple[socket.socket, float]:
    """Send `request` on a socket with a tiny receive buffer and never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    sock.sendall(request)
    return sock, asyncio.get_running_loop().time()


async def _read_all(sock: socket.socket, within: float) -> int | None:
    """Read until the connection ends; the bytes received, or None if it did not end
    within `within` seconds."""
    loop = asyncio.get_running_loop()
    received = 0
    try:
        async with asyncio.timeout(within):
            while chunk := await loop.sock_recv(sock, 1 << 20):
                received += len(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return received


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
async def test_unread_response_is_aborted_after_the_write_timeout(
        serve: Any, connection: str) -> None:
    running = await serve(upload_app(write_timeout=0.5, outbound_budget=256 * 1024))
    state = running.server.state
    sock, _ = await _unread(
        running.port, f"GET /big HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n"
        .encode())
    try:
        await asyncio.sleep(2.0)  # never read: the server must give up on its own
        if connection == "keep-alive":
            assert state.stats.http_write_timeouts == 1
        # The response is gone: reading now ends (reset) before the 16 MiB arrive.
        received = await _read_all(sock, within=5)
        assert received is not None and received < 16 * 1024 * 1024
    finally:
        sock.close()


async def test_a_reading_client_gets_the_whole_large_response(serve: Any) -> None:
    running = await serve(upload_app(write_timeout=0.5, outbound_budget=256 * 1024))
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port, limit=1 << 25)
    try:
        for _ in range(2):  # and the keep-alive connection serves the next request
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(10):
                head, body = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200") and len(body) == 16 * 1024 * 1024
    finally:
        writer.close()
    assert running.server.state.stats.http_write_timeouts == 0


async def test_a_trickle_reader_is_aborted_too(serve: Any) -> None:
    """Reading a little now and then is not reading: under 64 KiB per write timeout.
    (What the kernel had already taken may still reach the client after the abort.)"""
    running = await serve(upload_app(write_timeout=0.5, outbound_budget=256 * 1024))
    stats = running.server.state.stats
    sock, _ = await _unread(running.port, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            while stats.http_write_timeouts == 0:
                with contextlib.suppress(ConnectionResetError):
                    await loop.sock_recv(sock, 512)
                await asyncio.sleep(0.05)
    finally:
        sock.close()
    assert stats.http_write_timeouts == 1
