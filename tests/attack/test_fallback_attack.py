"""Attacks on the HTTP fallbacks of the chat example (web/http_fallback.py,
web/emulation.py): many open pubsocket.v1 streams that never read, subscribed to the
bystander's topic, while a flood of command POSTs hits one stream's session, unknown
sessions and Centrifugo's /emulation with garbage. Every POST is answered 204, 400, 404
or 429 (never a 5xx), the flooded session is closed by its own rate limit, and the
bystander stays fast (p99 < 50 ms) with nothing lost; the server's RSS stays bounded:
a stream costs its buffers, a refused POST a token-bucket lookup."""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from tests.attack.harness import Server, attack_server, measure, token

STREAMS = 200
OPEN = "/ws/chat?transport=http_stream"
EMULATE = "/ws/chat?transport=emulation"


async def _post(server: Server, path: str, body: bytes, tok: str | None = None
                ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    auth = f"Authorization: Bearer {tok}\r\n" if tok else ""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json"
                 f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return int(head.split()[1]), reader, writer


async def streams_and_post_flood(server: Server, stop: asyncio.Event) -> str:
    held: list[asyncio.StreamWriter] = []
    hello: dict[str, str] = {}
    subscribe = orjson.dumps([{"action": "subscribe", "topic": "room:bystander"}])
    for n in range(STREAMS):  # many users: one user's burst is the HTTP rate limit's
        status, reader, writer = await _post(server, OPEN, subscribe, token(f"s{n}"))
        assert status == 200, status
        held.append(writer)
        if not hello:
            hello = orjson.loads(await asyncio.wait_for(reader.readline(), 5))
    assert hello["type"] == "transport", hello
    publish = [{"action": "publish", "topic": "room:flood", "data": "x" * 512}] * 50
    bodies = [
        orjson.dumps({"session": hello["session"], "node": hello["node"], "data": publish}),
        orjson.dumps({"session": "guessed", "node": hello["node"], "data": []}),
        b'{"session": 1}',
    ]
    statuses: dict[int, int] = {}
    posts = 0
    while not stop.is_set():
        for path, body in [(EMULATE, bodies[posts % 3]), ("/emulation", bodies[2])]:
            with contextlib.suppress(OSError, TimeoutError):
                status, _, writer = await _post(server, path, body)
                statuses[status] = statuses.get(status, 0) + 1
                writer.close()
        posts += 1
    for writer in held:
        writer.close()
    assert set(statuses) <= {204, 400, 404, 429}, statuses
    assert statuses.get(429), statuses  # the flood met the per-client HTTP rate limit
    return f"{len(held)} open streams; POSTs answered {statuses}"


async def test_open_streams_and_a_post_flood() -> None:
    async with attack_server() as server:
        report = await measure(server, streams_and_post_flood,
                               name="http fallback streams + POST flood", seconds=6)
    report.check()
