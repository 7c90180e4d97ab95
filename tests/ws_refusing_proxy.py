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
behind it: ``python -m tests.ws_refusing_proxy 7145 [listen-port]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Literal

import httptools

Mode = Literal["403", "drop", "kill"]
REFUSAL = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n"
           b"Connection: close\r\n\r\nWebSocket blocked by the proxy")
MAX_CHUNKS = 1_000_000  # per direction and connection: far more than any test moves


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


class WsRefusingProxy:
    """Forwards every connection to ``127.0.0.1:target``, minus WebSocket upgrades."""

    def __init__(self, target: int, mode: Mode = "403", port: int = 0,
                 kill_after: float = 1.0) -> None:
        self.target = target
        self.mode = mode
        self.kill_after = kill_after
        self.refused = 0  # WebSocket upgrade requests turned away (or, "kill", cut)
        self.forwarded = 0  # connections passed on to the server
        self._listen = port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen)

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        requests = _Requests()
        parser = httptools.HttpRequestParser(requests)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        to_client: asyncio.Task[None] | None = None
        upgraded = False  # "kill": past the upgrade, bytes are frames, not HTTP
        try:
            for _ in range(MAX_CHUNKS):
                data = await reader.read(65536)
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
                    upstream = await asyncio.open_connection("127.0.0.1", self.target)
                    self._writers.add(upstream[1])
                    self.forwarded += 1
                    to_client = asyncio.create_task(self._pipe(upstream[0], writer))
                upstream[1].write(data)
                await upstream[1].drain()
        except OSError:
            pass
        finally:
            if upstream is not None:
                upstream[1].transport.abort()
                self._writers.discard(upstream[1])
            if to_client is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await to_client
            writer.transport.abort()
            self._writers.discard(writer)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Server to client, as it comes: a streamed response is never buffered here."""
        with contextlib.suppress(OSError):
            for _ in range(MAX_CHUNKS):
                data = await src.read(65536)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        dst.transport.abort()


@contextlib.asynccontextmanager
async def ws_refusing_proxy(target: int, mode: Mode = "403",
                            kill_after: float = 1.0) -> AsyncIterator[WsRefusingProxy]:
    proxy = WsRefusingProxy(target, mode, kill_after=kill_after)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _main(target: int, port: int) -> None:
    proxy = WsRefusingProxy(target, port=port)
    await proxy.start()
    print(f"http://127.0.0.1:{proxy.port}/ -> 127.0.0.1:{target}, WebSocket refused (403)")
    assert proxy._server is not None
    await proxy._server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0))
