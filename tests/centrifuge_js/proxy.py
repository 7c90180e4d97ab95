"""A TCP proxy on 127.0.0.1 port 0 the tests put between an SDK and the server, so a
test can cut the network (no close frame: the SDK sees an abnormal close), keep the SDK
out for a while, or stop reading the server's bytes (a slow consumer) without reaching
into the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Proxy:
    """Forwards every accepted connection to ``127.0.0.1:target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.accepting = True
        self.reading = asyncio.Event()  # cleared: server -> client bytes are not read
        self.reading.set()
        self.accepted = 0
        self.sent: list[bytearray] = []  # per accepted connection: every client -> server byte
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_w)
        self._pairs.add(pair)
        record = bytearray()
        self.sent.append(record)
        try:
            await asyncio.gather(self._pipe(reader, up_w, False, record),
                                 self._pipe(up_r, writer, True))
        finally:
            self._pairs.discard(pair)
            writer.transport.abort()
            up_w.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    from_server: bool, record: bytearray | None = None) -> None:
        with contextlib.suppress(OSError):
            while True:
                if from_server:
                    await self.reading.wait()
                data = await src.read(65536)
                if not data:
                    break
                if record is not None and len(record) < 1 << 20:
                    record += data
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    def cut(self, refuse: bool = True) -> None:
        """Abort every proxied connection; with `refuse`, abort new ones until `resume`."""
        self.accepting = not refuse
        for client, upstream in list(self._pairs):
            client.transport.abort()
            upstream.transport.abort()

    def resume(self) -> None:
        self.accepting = True
        self.reading.set()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def client_frames(raw: bytes) -> list[bytes]:
    """The payloads of the (masked, RFC 6455 5.2) WebSocket frames a client sent after its
    upgrade request, in order; an incomplete last frame is left out."""
    pos = raw.index(b"\r\n\r\n") + 4
    out: list[bytes] = []
    for _ in range(100_000):  # bounded: one test sends far fewer frames
        if pos + 6 > len(raw):
            break
        b1 = raw[pos + 1]
        assert b1 & 0x80, "client frames are masked"
        size, pos = b1 & 0x7F, pos + 2
        if size == 126:
            size, pos = int.from_bytes(raw[pos:pos + 2], "big"), pos + 2
        elif size == 127:
            size, pos = int.from_bytes(raw[pos:pos + 8], "big"), pos + 8
        mask, pos = raw[pos:pos + 4], pos + 4
        if pos + size > len(raw):
            break
        out.append(bytes(c ^ mask[i % 4] for i, c in enumerate(raw[pos:pos + size])))
        pos += size
    return out
