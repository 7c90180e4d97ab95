"""A raw SSE client for the tests: an HTTP/1.1 GET over a plain socket, events parsed
as the EventSource spec says (``id``, ``data`` lines; an event ends at a blank line)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.centrifuge_js.conftest import token

UNI = "/connection/uni_sse"


def query(subs: dict[str, Any], tok: str | None = None, **extra: str) -> str:
    """The path of a uni_sse request for `subs` (channel -> {} or recovery fields)."""
    body: dict[str, Any] = {"subs": subs}
    body["token"] = token() if tok is None else tok
    params = {"cf_connect": orjson.dumps(body).decode(), **extra}
    return UNI + "?" + urllib.parse.urlencode(params)


@dataclass
class Event:
    data: Any
    id: str | None = None


@dataclass
class SseClient:
    """An open stream: `status`, `headers`, and `next()` event by event."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytearray = field(default_factory=bytearray)  # every body byte, as received

    @classmethod
    async def open(cls, port: int, path: str, last_id: str | None = None) -> SseClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Accept: text/event-stream\r\n{extra}\r\n".encode())
        client = cls(reader, writer)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        client.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                client.headers[k.strip().lower()] = v.strip()
        return client

    async def body(self) -> bytes:
        """The body of a refusal (a complete response, by its Content-Length)."""
        async with asyncio.timeout(5):
            return await self.reader.readexactly(int(self.headers["content-length"]))

    async def next(self, timeout: float = 5.0) -> Event:
        """The next event that has data (pings included)."""
        data: list[str] = []
        event_id: str | None = None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise EOFError("the stream ended")
                self.raw += line
                text = line.decode().rstrip("\r\n")
                if not text:
                    if data:
                        return Event(orjson.loads("\n".join(data)), event_id)
                    continue
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value

    async def until(self, predicate: Any, timeout: float = 5.0) -> Event:
        while True:
            event = await self.next(timeout)
            if predicate(event.data):
                return event

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
