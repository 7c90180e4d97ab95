"""Attacks on /connection/uni_sse (the chat example's, secured): streams that never read
while a flood topic and the bystander's topic fan out to them (every one is cut at the
outbound budget, read from /metrics), and a flood of unauthenticated stream requests.
The bystander stays fast (p99 < 50 ms), loses nothing, and the server's RSS stays
bounded: slow readers cost at most the budget each, refusals a parse and a token check
before anything is streamed."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
import urllib.request

import orjson
from websockets.asyncio.client import connect as connect_ws
from websockets.typing import Subprotocol

from tests.attack.harness import Server, attack_server, measure, token
from tests.conftest import API_KEY

V1 = [Subprotocol("pubsocket.v1")]

STREAMS = 40  # each may hold up to OUTBOUND_BUDGET (1 MiB) before it is cut


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
    """Streams on the bystander's topic and a flood topic that never read a byte after
    their head, while the attacker publishes 32 KiB messages to the flood topic as fast
    as its publish byte rate allows: each stream's kernel buffers fill, then its
    outbound budget, and it is cut (the bystander's own deliveries keep flowing)."""
    held: list[asyncio.StreamWriter] = []
    for n in range(STREAMS):  # many users (one user's burst is the HTTP rate limit's)
        connect = orjson.dumps({"token": token(f"u{n}"), "subs": {
            "room:bystander": {}, "room:flood": {}}}).decode()
        path = "/connection/uni_sse?" + urllib.parse.urlencode({"cf_connect": connect})
        _, writer, head = await _open(server, path)
        assert head.startswith(b"HTTP/1.1 200"), head
        held.append(writer)
    async with connect_ws(server.ws + "/ws/chat", subprotocols=V1, additional_headers={
            "Authorization": f"Bearer {token('flooder')}"}) as ws:
        blob = "x" * 32 * 1024
        while not stop.is_set():
            await ws.send(orjson.dumps({"action": "publish", "topic": "room:flood",
                                        "data": blob}).decode())
            await asyncio.sleep(0.03)  # ~1 MiB/s: the publish byte rate
    cut = await asyncio.to_thread(_slow_closes, server)
    for writer in held:
        writer.close()
    assert cut >= STREAMS // 2, f"only {cut} of {STREAMS} non-reading streams were cut"
    return f"{len(held)} non-reading streams fed ~1 MiB/s each, {cut} cut"


def _slow_closes(server: Server) -> int:
    """The server's slow-consumer count, from /metrics (read with the API key)."""
    request = urllib.request.Request(server.http + "/metrics",
                                     headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(r"^\S*slow_consumer_closes\S* (\d+(?:\.\d+)?)$", text, re.M)
    assert found is not None, text
    return int(float(found[1]))


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
