"""A "black-hole" TCP proxy on 127.0.0.1 port 0: while `hold()` is in force it
forwards nothing in either direction and closes nothing, the way a NAT that timed out
or a laptop resumed on another network leaves a connection half-open. New connections
are accepted and held the same way. `heal()` lets bytes flow again (what was held is
delivered then, as TCP retransmission would)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class BlackHole:
    """Forwards every accepted connection to ``127.0.0.1:target`` unless held."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def hold(self) -> None:
        """Stop forwarding, in both directions, on every connection; close none."""
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            await self.flowing.wait()  # a held path does not even reach the server
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_w)
        try:
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        finally:
            for w in (writer, up_w):
                w.transport.abort()
                self._writers.discard(w)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            for _ in range(1_000_000):  # bounded; a test moves far fewer chunks
                await self.flowing.wait()
                data = await src.read(65536)
                if not data:
                    break
                await self.flowing.wait()  # read while flowing, then held: keep it back
                dst.write(data)
                await dst.drain()
        dst.transport.abort()


@contextlib.asynccontextmanager
async def black_hole(port: int) -> AsyncIterator[BlackHole]:
    proxy = BlackHole(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
