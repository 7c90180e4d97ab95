"""Streaming responses: a route that keeps its connection open (SSE).

A handler returns a `StreamResponse`; the transport writes its head (status, content
type, headers; no length: the body ends when the connection does), turns the connection
into a `Stream` and awaits ``response.start(stream)``. The stream is then fed like a
WebSocket in push mode: the hub's fan-out and the session's replies reach it with
``deliver(frame)`` through its wire (``stream.wires``), and it counts against
``MAX_CONNECTIONS`` with the WebSockets, under the same outbound budget and write
timeout (a slow consumer is cut). Only the native server streams; under ASGI a
`StreamResponse` is answered 501 (docs/centrifuge.md "Unidirectional SSE").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..hub.session import Peer
from ..hub.wire import WireSet
from .response import Response
from .websocket import Listener


class Stream(Peer, Protocol):
    """An open streamed response: a session's `Peer` that never receives."""

    wires: WireSet

    @property
    def closed(self) -> bool: ...

    def attach(self, listener: Listener) -> None:
        """`listener.on_close()` is called once when the stream ends (it never sends)."""
        ...

    def track(self, topics: list[str], prefix: bytes, slots: list[bytes]) -> None:
        """Name each event by the positions of `topics` (server/sse.py)."""
        ...


@dataclass(slots=True)
class StreamResponse(Response):
    """A response whose body is written by `start` for as long as the stream lasts."""

    start: Callable[[Stream], Awaitable[None]] | None = field(default=None, repr=False)
