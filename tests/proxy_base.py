"""What the tests' TCP proxies share: listen on 127.0.0.1 (port 0 unless told), keep
every connection's writers so `cut()` and `close()` can abort them all, open an
upstream connection to a server on 127.0.0.1, and pipe bytes as they come (a streamed
response is never buffered). Each proxy (tests/round_robin_proxy.py,
tests/ws_refusing_proxy.py, tests/blackhole.py, tests/link_proxy.py,
tests/centrifuge_js/proxy.py) is a `TcpProxy` whose `handle` says what it does with one
accepted connection; an instance is its own async context manager (started on entry,
closed on exit)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

MAX_CHUNKS = 1_000_000  # per direction and connection: far more than any test moves
CHUNK = 65536
REFUSAL = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n"
           b"Connection: close\r\n\r\nWebSocket blocked by the proxy")  # a refused upgrade


class TcpProxy:
    """A proxy on ``127.0.0.1:port``; subclasses implement `handle`."""

    def __init__(self, *, port: int = 0, limit: int = CHUNK) -> None:
        """`limit`: the stream reader's buffer limit (a longer ``readuntil`` overruns)."""
        self._listen = port
        self._limit = limit
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen,
                                                  limit=self._limit)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        """Run by hand, once started: serve until interrupted."""
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cut(self) -> None:
        """Abort every open connection, both sides (new ones are accepted as before):
        a stream cut mid-way, the way a proxy restart or a dropped link does it."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted client connection; it is aborted when this returns. An
        `OSError` (a side gone, a server down) ends it the same way."""
        raise NotImplementedError

    async def connect(self, target: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to ``127.0.0.1:target``, aborted by `cut` and `close`; the caller
        releases it with `drop`."""
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target)
        self._writers.add(up_w)
        return up_r, up_w

    def drop(self, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()
        self._writers.discard(writer)

    async def forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      target: int, first: bytes = b"", *, half_close: bool = False,
                      up_gate: asyncio.Event | None = None,
                      down_gate: asyncio.Event | None = None,
                      record: bytearray | None = None) -> None:
        """Connect to `target`, send it `first`, then pipe both ways until both end (see
        `pipe` for the options; `record` gets the client's bytes)."""
        up_r, up_w = await self.connect(target)
        try:
            if first:
                up_w.write(first)
            await asyncio.gather(
                self.pipe(reader, up_w, half_close=half_close, gate=up_gate, record=record),
                self.pipe(up_r, writer, half_close=half_close, gate=down_gate))
        finally:
            self.drop(up_w)

    @staticmethod
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, *,
                   half_close: bool = False, gate: asyncio.Event | None = None,
                   record: bytearray | None = None) -> None:
        """Bytes from `src` to `dst` as they come, until `src` ends or a side fails.
        While `gate` is clear nothing is read or written (a chunk read just before is
        kept back). `record` keeps a copy of up to 1 MiB. At the end `dst` is aborted,
        or with `half_close` only its write side is closed (the other direction may
        still flow)."""
        with contextlib.suppress(OSError):
            for _ in range(MAX_CHUNKS):
                if gate is not None:
                    await gate.wait()
                data = await src.read(CHUNK)
                if not data:
                    break
                if record is not None and len(record) < 1 << 20:
                    record += data
                if gate is not None:
                    await gate.wait()
                dst.write(data)
                await dst.drain()
        if not half_close:
            dst.transport.abort()
        elif dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self.handle(reader, writer)
        except OSError:
            pass  # a server down or a side gone: the client sees its connection close
        finally:
            self.drop(writer)
