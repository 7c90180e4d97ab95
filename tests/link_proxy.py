"""A plain TCP link on 127.0.0.1 port 0 to ``127.0.0.1:target`` (a node's link to Redis,
for the tests that cut it): forwards every connection both ways until `close()`, which
aborts them all and stops listening, so new connections are refused. A new `Link` on
the same port (``Link(target, port)``) restores it."""

from __future__ import annotations

import asyncio

from tests.proxy_base import TcpProxy


class Link(TcpProxy):
    """Forwards each accepted connection to ``127.0.0.1:target``."""

    def __init__(self, target: int, port: int = 0) -> None:
        super().__init__(port=port)
        self.target = target

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.forward(reader, writer, self.target)
