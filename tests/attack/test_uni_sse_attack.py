"""Attacks on /connection/uni_sse (the chat example's, secured): many streams that never
read while the bystander's topic fans out to them, and a flood of unauthenticated
stream requests. The bystander stays fast (p99 < 50 ms), loses nothing, and the
server's RSS stays bounded: slow readers are cut at the outbound budget, refusals cost
a parse and a token check before anything is streamed."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse

import orjson

from tests.attack.harness import Server, attack_server, measure, token

STREAMS = 300


def _path(tok: str, topic: str) -> str:
    connect = orjson.dumps({"token": tok, "subs": {topic: {}}}).decode()
    return "/connection/uni_sse?" + urllib.parse.urlencode({"cf_connect": connect})


async def _open(server: Server, path: str) -> tuple[asyncio.StreamReader,
                                                     asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


async def slow_readers(server: Server, stop: asyncio.Event) -> str:
    """Streams on the bystander's topic that never read a byte after their head."""
    held: list[asyncio.StreamWriter] = []
    for n in range(STREAMS):  # many users (one user's burst is the HTTP rate limit's)
        _, writer, head = await _open(server, _path(token(f"u{n}"), "room:bystander"))
        assert head.startswith(b"HTTP/1.1 200"), head
        held.append(writer)
    await stop.wait()
    for writer in held:
        writer.close()
    return f"{len(held)} non-reading streams"


async def unauthenticated(server: Server, stop: asyncio.Event) -> str:
    """Stream requests with a bad token, as fast as the server answers them."""
    path = _path("not-a-token", "room:bystander")
    statuses: dict[int, int] = {}
    while not stop.is_set():
        with contextlib.suppress(OSError, TimeoutError):
            _, writer, head = await _open(server, path)
            status = int(head.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
            writer.close()
    assert set(statuses) <= {401, 429}, statuses  # never a stream
    return f"refusals {statuses}"


async def test_streams_that_never_read() -> None:
    async with attack_server() as server:
        report = await measure(server, slow_readers, name="uni_sse slow readers",
                               seconds=6)
    report.check()


async def test_unauthenticated_stream_flood() -> None:
    async with attack_server() as server:
        report = await measure(server, unauthenticated, name="uni_sse bad tokens",
                               seconds=4)
    report.check()
