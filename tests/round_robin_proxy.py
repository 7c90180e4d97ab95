"""A round-robin HTTP proxy on 127.0.0.1 port 0, for "no sticky sessions" tests: each
new connection goes to the next backend in turn, so an HTTP stream and the commands
its client POSTs land on different nodes.

By default every forwarded request is made the connection's last (its ``Connection``
header becomes ``close``), so a client opens a new connection for its next request
and requests, not only connections, take turns: the way a load balancer without
session affinity spreads them. A WebSocket upgrade keeps its headers (it needs
``Connection: Upgrade``) unless ``refuse_websocket`` is set: then it is answered
``403 Forbidden`` and never reaches a backend, like the proxies of issue 19. What went
where is in `routed` (backend index, request line), for the tests to assert on.

Run by hand in front of two servers: ``python -m tests.round_robin_proxy 7145 7146``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from tests.proxy_base import REFUSAL, TcpProxy

MAX_HEAD = 65536  # bytes of a request head; a longer one is refused (431)
TOO_LONG = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n")


def rewrite_head(head: bytes) -> tuple[bytes, bytes, bool]:
    """The request line, the head to forward (``Connection: close`` unless it is an
    upgrade) and whether the request asks for a WebSocket. `head` ends with its blank
    line."""
    lines = head[:-4].split(b"\r\n")
    websocket = any(name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket"
                    for name, _, value in (line.partition(b":") for line in lines[1:]))
    if websocket:
        return lines[0], head, True
    kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower() != b"connection"]
    return lines[0], b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n", False


class RoundRobinProxy(TcpProxy):
    """Forwards each accepted connection to the next of ``127.0.0.1:<backends>``."""

    def __init__(self, backends: Sequence[int], *, refuse_websocket: bool = False,
                 keepalive: bool = False, port: int = 0) -> None:
        """`keepalive` forwards ``Connection`` as sent (connections, not requests,
        take turns)."""
        if not backends:
            raise ValueError("at least one backend")
        super().__init__(port=port, limit=MAX_HEAD)
        self.backends = list(backends)
        self.refuse_websocket = refuse_websocket
        self.keepalive = keepalive
        self.routed: list[tuple[int, bytes]] = []  # (backend index, request line)
        self.refused = 0  # WebSocket upgrades answered 403
        self.turn = 0  # the backend index the next request goes to

    def backends_of(self, prefix: bytes) -> list[int]:
        """The backend index of each routed request whose request line starts with
        `prefix` (e.g. ``b"POST /emulation"``), in order."""
        return [index for index, line in self.routed if line.startswith(prefix)]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            writer.write(TOO_LONG)
            await writer.drain()
            return
        except asyncio.IncompleteReadError:
            return  # closed before a whole head: nothing to forward
        line, forward, websocket = rewrite_head(head)
        if websocket and self.refuse_websocket:
            self.refused += 1
            writer.write(REFUSAL)
            await writer.drain()
            return
        index, self.turn = self.turn, (self.turn + 1) % len(self.backends)
        self.routed.append((index, line))
        await self.forward(reader, writer, self.backends[index],
                           head if self.keepalive else forward, half_close=True)


def round_robin_proxy(backends: Sequence[int], *, refuse_websocket: bool = False,
                      keepalive: bool = False) -> RoundRobinProxy:
    """A proxy to use as ``async with``: started on entry, closed on exit."""
    return RoundRobinProxy(backends, refuse_websocket=refuse_websocket, keepalive=keepalive)


async def _main(backends: list[int]) -> None:
    proxy = RoundRobinProxy(backends, refuse_websocket="--refuse-websocket" in sys.argv)
    await proxy.start()
    print(f"http://127.0.0.1:{proxy.port}/ -> 127.0.0.1:{backends} in turn")
    await proxy.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main([int(a) for a in sys.argv[1:] if a.isdigit()]))
