"""A flood of CORS preflights (web/cors.py) on the chat example's HTTP browser transports:
``OPTIONS`` on /emulation, /connection/http_stream and /connection/sse from an allowed
origin and from origins not allowed, plus streams opened from an origin not allowed.
Every request is answered 204, 403 or 429 (never a 5xx, never a stream for a refused
origin), the flood meets the HTTP rate limit, the bystander stays fast with nothing
lost and the server's RSS bounded: a preflight costs a token-bucket lookup and a
fixed reply."""

from __future__ import annotations

import asyncio
import contextlib

from tests.attack.harness import Server, attack_server, measure

ALLOWED = "https://app.example.com"
PATHS = ["/emulation", "/connection/http_stream", "/connection/sse"]


async def _ask(server: Server, method: str, path: str, origin: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\n"
                     "Access-Control-Request-Method: POST\r\n"
                     "Access-Control-Request-Headers: content-type\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return int(head.split()[1])
    finally:
        writer.close()


async def preflight_flood(server: Server, stop: asyncio.Event) -> str:
    statuses: dict[tuple[str, int], int] = {}
    asks = [("OPTIONS", ALLOWED), ("OPTIONS", "https://evil.example"),
            ("POST", "https://evil.example")]
    n = 0
    while not stop.is_set():
        method, origin = asks[n % len(asks)]
        path = PATHS[n % len(PATHS)] if method == "OPTIONS" else "/connection/http_stream"
        with contextlib.suppress(OSError, TimeoutError):
            status = await _ask(server, method, path, origin)
            key = (f"{method} {'allowed' if origin == ALLOWED else 'refused'}", status)
            statuses[key] = statuses.get(key, 0) + 1
        n += 1
    assert {status for _, status in statuses} <= {204, 403, 429}, statuses
    assert statuses.get(("OPTIONS allowed", 204)), statuses
    assert statuses.get(("OPTIONS allowed", 429)), statuses  # the HTTP rate limit
    assert not statuses.get(("POST refused", 200)), statuses  # no stream for a refusal
    return f"{n} requests answered {statuses}"


async def test_a_preflight_flood() -> None:
    async with attack_server(PUBSOCKET_ALLOWED_ORIGINS=ALLOWED) as server:
        report = await measure(server, preflight_flood, name="CORS preflight flood",
                               seconds=5)
    report.check()
