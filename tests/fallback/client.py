"""A raw HTTP/1.1 client for the fallback tests: one POST over a plain socket, read
either as a complete response (by Content-Length) or as a stream of lines / bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.raw_http import RawResponse


class HttpStream(RawResponse):
    """An answered POST: `status`, `headers`; the body read as it arrives."""

    @classmethod
    async def post(cls, port: int, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None, method: str = "POST"
                   ) -> HttpStream:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        return await cls.send(port, f"{method} {path} HTTP/1.1\r\n{extra}"
                                    f"Content-Length: {len(body)}\r\n\r\n", body)

    async def line(self, timeout: float = 5.0) -> Any:
        """The next JSON line of a stream; EOFError when it ended."""
        async with asyncio.timeout(timeout):
            raw = await self.reader.readline()
        if not raw:
            raise EOFError("the stream ended")
        assert raw.endswith(b"\n"), raw
        return orjson.loads(raw)

    async def until(self, want: dict[str, Any], timeout: float = 5.0,
                    limit: int = 100) -> tuple[Any, list[Any]]:
        """The first line containing every item of `want`, and the lines before it."""
        seen: list[Any] = []
        for _ in range(limit):
            msg = await self.line(timeout)
            if all(msg.get(k) == v for k, v in want.items()):
                return msg, seen
            seen.append(msg)
        raise AssertionError(f"no {want} in {seen}")


async def request(port: int, path: str, body: Any = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A complete POST: (status, headers, body); `body` as bytes or JSON."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    client = await HttpStream.post(port, path, raw,
                                   {"Content-Type": "application/json", **(headers or {})})
    try:
        return client.status, client.headers, await client.body()
    finally:
        await client.close()
