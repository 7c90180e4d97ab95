"""A raw SSE client for the tests: an HTTP/1.1 GET over a plain socket, events parsed
as the EventSource spec says (``id``, ``data`` lines; an event ends at a blank line)."""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.centrifuge_js.conftest import token
from tests.raw_http import RawResponse

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
class SseClient(RawResponse):
    """An open stream: `status`, `headers`, and `next()` event by event."""

    raw: bytearray = field(default_factory=bytearray)  # every body byte, as received

    @classmethod
    async def open(cls, port: int, path: str, last_id: str | None = None) -> SseClient:
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
        return await cls.send(port, f"GET {path} HTTP/1.1\r\n"
                                    f"Accept: text/event-stream\r\n{extra}\r\n")

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
