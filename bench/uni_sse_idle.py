"""Idle memory per uni_sse stream vs per Centrifuge WebSocket (issue 19), and the cost of
the per-connection event id.

A fresh ``pubsocket serve examples/chat`` subprocess per mode (tests/attack/harness.py);
`--conns` clients each connect with a token and subscribe to one of 200 channels, then
sit idle: ``ws`` over /connection/websocket (a connect and a subscribe command), ``sse``
over /connection/uni_sse (a raw GET; the socket is read once for the head and the
first events), ``http_stream`` over Centrifugo's emulation (/connection/http_stream:
a POST of the same two commands; read once for the head and the connect reply).
Prints the server's RSS growth per connection for each mode; then the
time `SseStream.deliver` spends building an event id for a stream of 1, 16 and 128
channels (the one per-connection cost of a broadcast to SSE streams).

    PYTHONPATH=src python -m bench.uni_sse_idle --conns 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import timeit
import urllib.parse
from typing import Any

from tests.attack.harness import Server, attack_server, token
from websockets.asyncio.client import ClientConnection, connect

ENV = {"PUBSOCKET_PING_INTERVAL": "0", "PUBSOCKET_RATE_LIMIT": "0",
       "PUBSOCKET_AUTH_FAILURE_LIMIT": "0", "PUBSOCKET_HTTP_RATE_LIMIT": "0",
       "PUBSOCKET_PRESENCE": ""}


async def _ws(server: Server, tok: str, i: int) -> ClientConnection:
    ws = await connect(server.ws + "/connection/websocket", open_timeout=30)
    await ws.send(json.dumps({"id": 1, "connect": {"token": tok}}) + "\n"
                  + json.dumps({"id": 2, "subscribe": {"channel": f"chat:idle-{i % 200}"}}))
    await ws.recv()
    return ws


async def _sse(server: Server, tok: str, i: int) -> asyncio.StreamWriter:
    connect_req = json.dumps({"token": tok, "subs": {f"chat:idle-{i % 200}": {}}})
    path = "/connection/uni_sse?" + urllib.parse.urlencode({"cf_connect": connect_req})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    await reader.readuntil(b"\n\n")  # the connect push
    return writer


async def _http_stream(server: Server, tok: str, i: int) -> asyncio.StreamWriter:
    body = (json.dumps({"id": 1, "connect": {"token": tok}}) + "\n" + json.dumps(
        {"id": 2, "subscribe": {"channel": f"chat:idle-{i % 200}"}})).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    await reader.readuntil(b"\n")  # the connect reply
    return writer


OPENERS: dict[str, Any] = {"ws": _ws, "sse": _sse, "http_stream": _http_stream}


async def measure(mode: str, conns: int) -> float:
    async with attack_server(**ENV) as server:
        tok = token("idle")
        await asyncio.sleep(0.5)
        before = server.rss()
        held: list[Any] = []
        opener = OPENERS[mode]
        for first in range(0, conns, 100):
            held += await asyncio.gather(*(opener(server, tok, i)
                                           for i in range(first, min(conns, first + 100))))
        await asyncio.sleep(2.0)
        after = server.rss()
        for conn in held:
            if mode == "ws":
                await conn.close()
            else:
                conn.close()
    return (after - before) / conns


def id_cost(channels: int, number: int = 200_000) -> float:
    """Seconds per delivered positioned event on a stream of `channels` channels."""
    from pubsocket.brokers.base import Position
    from pubsocket.protocols.centrifuge.uni_sse import position_header
    from pubsocket.server.sse import SseStream, sse_frame

    class Transport:
        def set_protocol(self, p: object) -> None: ...

    from pubsocket.config import Settings

    class State:
        settings = Settings()
        streams: set[object] = set()
        flusher = type("F", (), {"mark": staticmethod(lambda f: None)})()
        stats = None

    stream = SseStream(Transport(), State())  # type: ignore[arg-type]
    topics = [f"chat:room-{n}" for n in range(channels)]
    stream.track(topics, b"0badc0de", [b"1:abcdef01"] * channels)
    frame = sse_frame(position_header(topics[-1], Position(7, "abcdef01"))
                      + b'{"channel":"x","pub":{"data":{"text":"hi"},"offset":7}}')

    def one() -> None:
        stream._out = []
        stream.deliver(frame)

    return timeit.timeit(one, number=number) / number


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--modes", default="ws,sse,http_stream")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        per = await measure(mode, args.conns)
        print(f"{mode:11} idle RSS per connection: {per / 1024:.1f} KiB "
              f"({args.conns} connections)")
    for channels in (1, 16, 128):
        print(f"event id for {channels:3} channels: {id_cost(channels) * 1e9:.0f} ns "
              "per delivered event")


if __name__ == "__main__":
    asyncio.run(main())
