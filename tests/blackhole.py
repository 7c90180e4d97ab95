"""A "black-hole" TCP proxy on 127.0.0.1 port 0: while `hold()` is in force it
forwards nothing in either direction and closes nothing, the way a NAT that timed out
or a laptop resumed on another network leaves a connection half-open. New connections
are accepted and held the same way. `heal()` lets bytes flow again (what was held is
delivered then, as TCP retransmission would)."""

from __future__ import annotations

import asyncio

from tests.proxy_base import TcpProxy


class BlackHole(TcpProxy):
    """Forwards every accepted connection to ``127.0.0.1:target`` unless held."""

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.accepted = 0

    def hold(self) -> None:
        """Stop forwarding, in both directions, on every connection; close none."""
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self.flowing.wait()  # a held path does not even reach the server
        await self.forward(reader, writer, self.target,
                           up_gate=self.flowing, down_gate=self.flowing)


def black_hole(port: int) -> BlackHole:
    """A black hole to use as ``async with``: started on entry, closed on exit."""
    return BlackHole(port)
