"""A raw HTTP/1.1 exchange over a plain socket, for tests that read a response as it
arrives (a stream of lines or events) or need bytes no HTTP library would send: the
request is written as given, the head is parsed, the body is left on `reader`.
tests/fallback/client.py and tests/sse/client.py build their stream readers on it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Self


@dataclass
class RawResponse:
    """An answered request: `status`, `headers` (lower-case names); the body unread."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def send(cls, port: int, head: str, body: bytes = b"") -> Self:
        """Connect to ``127.0.0.1:port``, write `head` (the request line and headers
        after which ``Host`` is inserted, ending with its blank line) and `body`, and
        read the response head (5 s at most)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        line, _, rest = head.partition("\r\n")
        writer.write(f"{line}\r\nHost: 127.0.0.1:{port}\r\n{rest}".encode() + body)
        client = cls(reader, writer)
        async with asyncio.timeout(5):
            raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        client.status = int(lines[0].split()[1])
        for header in lines[1:]:
            if ":" in header:
                k, v = header.split(":", 1)
                client.headers[k.strip().lower()] = v.strip()
        return client

    async def body(self) -> bytes:
        """A complete response's body (by its Content-Length)."""
        async with asyncio.timeout(5):
            return await self.reader.readexactly(int(self.headers.get("content-length", 0)))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
