"""A WebSocket-refusing HTTP proxy on 127.0.0.1 port 0, like the corporate proxies and
mobile carriers of issue 19: it forwards plain HTTP (streamed responses included) to
``127.0.0.1:target`` byte for byte, but a request that asks for ``Upgrade: websocket``
never reaches the server. ``mode="403"`` answers it ``403 Forbidden`` and closes;
``mode="drop"`` closes the connection without a word; ``mode="kill"`` lets the upgrade
through and aborts the connection `kill_after` seconds later (no close frame: the
client sees 1006), like proxies that cut long-lived upgraded connections.

Each request head on a client connection is parsed (httptools, as the server does), so
a keep-alive connection that carried ordinary requests is refused the same way when it
asks for an upgrade. Run it by hand in front of ``make run`` to try the chat demo
behind it: ``python -m tests.ws_refusing_proxy 7145 [listen-port]`` (or
``python tests/ws_refusing_proxy.py 7145 [listen-port]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Literal

import httptools

if __name__ == "__main__" and not __package__:  # run as a script: tests/ is sys.path[0]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.proxy_base import CHUNK, MAX_CHUNKS, REFUSAL, TcpProxy

Mode = Literal["403", "drop", "kill"]


class _Requests:
    """httptools callbacks: whether the request being parsed asks for a WebSocket."""

    def __init__(self) -> None:
        self.upgrade = b""
        self.websocket = False

    def on_message_begin(self) -> None:
        self.upgrade = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"upgrade":
            self.upgrade = value.strip().lower()

    def on_headers_complete(self) -> None:
        if self.upgrade == b"websocket":
            self.websocket = True


class WsRefusingProxy(TcpProxy):
    """Forwards every connection to ``127.0.0.1:target``, minus WebSocket upgrades."""

    def __init__(self, target: int, mode: Mode = "403", port: int = 0,
                 kill_after: float = 1.0) -> None:
        super().__init__(port=port)
        self.target = target
        self.mode = mode
        self.kill_after = kill_after
        self.refused = 0  # WebSocket upgrade requests turned away (or, "kill", cut)
        self.forwarded = 0  # connections passed on to the server

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = _Requests()
        parser = httptools.HttpRequestParser(requests)
        upstream: asyncio.StreamWriter | None = None
        to_client: asyncio.Task[None] | None = None
        upgraded = False  # "kill": past the upgrade, bytes are frames, not HTTP
        try:
            for _ in range(MAX_CHUNKS):
                data = await reader.read(CHUNK)
                if not data:
                    break
                try:
                    if not upgraded:
                        parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    pass  # the head is complete: `requests` says whether to refuse it
                except httptools.HttpParserError:
                    break  # not HTTP: a proxy would not pass it on either
                if requests.websocket and self.mode == "kill" and not upgraded:
                    upgraded = True
                    self.refused += 1
                    asyncio.get_running_loop().call_later(self.kill_after,
                                                          writer.transport.abort)
                elif requests.websocket and not upgraded:
                    # Not a byte of it goes on (a partial head already sent is left to
                    # the server's own head timeout when the upstream link closes).
                    self.refused += 1
                    if self.mode == "403":
                        writer.write(REFUSAL)
                        with contextlib.suppress(OSError):
                            await writer.drain()
                    break
                if upstream is None:
                    up_reader, upstream = await self.connect(self.target)
                    self.forwarded += 1
                    to_client = asyncio.create_task(self.pipe(up_reader, writer))
                upstream.write(data)
                await upstream.drain()
        finally:
            if upstream is not None:
                self.drop(upstream)
            if to_client is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await to_client


def ws_refusing_proxy(target: int, mode: Mode = "403",
                      kill_after: float = 1.0) -> WsRefusingProxy:
    """A proxy to use as ``async with``: started on entry, closed on exit."""
    return WsRefusingProxy(target, mode, kill_after=kill_after)


async def _main(target: int, port: int) -> None:
    proxy = WsRefusingProxy(target, port=port)
    await proxy.start()
    print(f"http://127.0.0.1:{proxy.port}/ -> 127.0.0.1:{target}, WebSocket refused (403)")
    await proxy.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0))
