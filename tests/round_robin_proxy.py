"""A round-robin HTTP proxy on 127.0.0.1 port 0, for "no sticky sessions" tests: each
new connection goes to the next backend in turn, so an HTTP stream and the commands
its client POSTs land on different nodes.

By default every forwarded request is made the connection's last (its ``Connection``
header becomes ``close``), so a client opens a new connection for its next request
and requests, not only connections, take turns: the way a load balancer without
session affinity spreads them. A WebSocket upgrade keeps its headers (it needs
``Connection: Upgrade``) unless ``refuse_websocket`` is set: then it is answered
``403 Forbidden`` and never reaches a backend, like the proxies of issue 19. What went
where is in `routed` (backend index, request line), for the tests to assert on.

Run by hand in front of two servers: ``python -m tests.round_robin_proxy 7145 7146``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence

MAX_HEAD = 65536  # bytes of a request head; a longer one is refused (431)
MAX_CHUNKS = 1_000_000  # per direction and connection: far more than any test moves
REFUSAL = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n"
           b"Connection: close\r\n\r\nWebSocket blocked by the proxy")
TOO_LONG = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n")


def rewrite_head(head: bytes) -> tuple[bytes, bytes, bool]:
    """The request line, the head to forward (``Connection: close`` unless it is an
    upgrade) and whether the request asks for a WebSocket. `head` ends with its blank
    line."""
    lines = head[:-4].split(b"\r\n")
    websocket = any(name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket"
                    for name, _, value in (line.partition(b":") for line in lines[1:]))
    if websocket:
        return lines[0], head, True
    kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower() != b"connection"]
    return lines[0], b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n", False


class RoundRobinProxy:
    """Forwards each accepted connection to the next of ``127.0.0.1:<backends>``."""

    def __init__(self, backends: Sequence[int], *, refuse_websocket: bool = False,
                 keepalive: bool = False, port: int = 0) -> None:
        """`keepalive` forwards ``Connection`` as sent (connections, not requests,
        take turns)."""
        if not backends:
            raise ValueError("at least one backend")
        self.backends = list(backends)
        self.refuse_websocket = refuse_websocket
        self.keepalive = keepalive
        self.routed: list[tuple[int, bytes]] = []  # (backend index, request line)
        self.refused = 0  # WebSocket upgrades answered 403
        self.turn = 0  # the backend index the next request goes to
        self._listen = port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def backends_of(self, prefix: bytes) -> list[int]:
        """The backend index of each routed request whose request line starts with
        `prefix` (e.g. ``b"POST /emulation"``), in order."""
        return [index for index, line in self.routed if line.startswith(prefix)]

    def cut(self) -> None:
        """Abort every open connection, both sides (new ones are accepted as before):
        a stream cut mid-way, the way a proxy restart or a dropped link does it."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen,
                                                  limit=MAX_HEAD)

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(TOO_LONG)
                await writer.drain()
                return
            except asyncio.IncompleteReadError:
                return  # closed before a whole head: nothing to forward
            line, forward, websocket = rewrite_head(head)
            if websocket and self.refuse_websocket:
                self.refused += 1
                writer.write(REFUSAL)
                await writer.drain()
                return
            index, self.turn = self.turn, (self.turn + 1) % len(self.backends)
            self.routed.append((index, line))
            up_reader, upstream = await asyncio.open_connection("127.0.0.1",
                                                                self.backends[index])
            self._writers.add(upstream)
            upstream.write(head if self.keepalive else forward)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except OSError:
            pass  # a backend down or a side gone: the client sees its connection close
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.transport.abort()
                    self._writers.discard(w)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Bytes as they come: a streamed response is never buffered here."""
        with contextlib.suppress(OSError):
            for _ in range(MAX_CHUNKS):
                data = await src.read(65536)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        if dst.can_write_eof():  # half-close: the other direction may still flow
            with contextlib.suppress(OSError):
                dst.write_eof()


@contextlib.asynccontextmanager
async def round_robin_proxy(backends: Sequence[int], *, refuse_websocket: bool = False,
                            keepalive: bool = False) -> AsyncIterator[RoundRobinProxy]:
    proxy = RoundRobinProxy(backends, refuse_websocket=refuse_websocket, keepalive=keepalive)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _main(backends: list[int]) -> None:
    proxy = RoundRobinProxy(backends, refuse_websocket="--refuse-websocket" in sys.argv)
    await proxy.start()
    print(f"http://127.0.0.1:{proxy.port}/ -> 127.0.0.1:{backends} in turn")
    assert proxy._server is not None
    await proxy._server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main([int(a) for a in sys.argv[1:] if a.isdigit()]))
