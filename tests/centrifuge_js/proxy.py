"""A TCP proxy on 127.0.0.1 port 0 the tests put between an SDK and the server, so a
test can cut the network (no close frame: the SDK sees an abnormal close), keep the SDK
out for a while, or stop reading the server's bytes (a slow consumer) without reaching
into the server."""

from __future__ import annotations

import asyncio

from tests.proxy_base import TcpProxy


class Proxy(TcpProxy):
    """Forwards every accepted connection to ``127.0.0.1:target``."""

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target
        self.accepting = True
        self.reading = asyncio.Event()  # cleared: server -> client bytes are not read
        self.reading.set()
        self.accepted = 0
        self.sent: list[bytearray] = []  # per accepted connection: every client -> server byte

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            return
        self.accepted += 1
        record = bytearray()
        self.sent.append(record)
        await self.forward(reader, writer, self.target, down_gate=self.reading, record=record)

    def cut(self, refuse: bool = True) -> None:
        """Abort every proxied connection; with `refuse`, abort new ones until `resume`."""
        self.accepting = not refuse
        super().cut()

    def resume(self) -> None:
        self.accepting = True
        self.reading.set()


def proxy_to(port: int) -> Proxy:
    """A proxy to use as ``async with``: started on entry, closed on exit."""
    return Proxy(port)


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
