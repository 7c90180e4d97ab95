"""Streaming responses: a route that keeps its connection open (SSE).

A handler returns a `StreamResponse`; the transport writes its head (status, content
type, headers; no length: the body ends when the connection does), turns the connection
into a `Stream` and awaits ``response.start(stream)``. The stream is then fed like a
WebSocket in push mode: the hub's fan-out and the session's replies reach it with
``deliver(frame)`` through its wire (``stream.wires``; on a ``batched`` wire the
fan-out's shared per-tick batches with ``deliver_batch``), and it counts against
``MAX_CONNECTIONS`` with the WebSockets, under the same outbound budget and write
timeout (a slow consumer is cut). Only the native server streams; under ASGI a
`StreamResponse` is answered 501 (docs/centrifuge.md "Unidirectional SSE").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..hub.session import Peer
from ..hub.wire import Batch, WireSet
from .response import Response
from .websocket import Listener


class Stream(Peer, Protocol):
    """An open streamed response: a session's `Peer`. A unidirectional stream never
    receives; an emulated bidirectional one receives the commands POSTed for it through
    `feed` (the hub's relay calls it), as a WebSocket receives messages.

    `binary`: fed messages reach the listener as bytes (Centrifuge Protobuf), else as
    str. `close_codes` translates closes like `Connection.close_codes`; `farewell(code,
    reason)` is the payload (before framing) the stream ends with, None for nothing
    (unset: the unidirectional Centrifuge disconnect push)."""

    wires: WireSet
    binary: bool
    close_codes: Mapping[int, tuple[int, str]] | None
    farewell: Callable[[int, str], bytes | None] | None

    @property
    def closed(self) -> bool: ...

    def deliver_batch(self, batch: Batch) -> None:
        """Queue the hub's shared `Batch` after what is queued (hub/topic.py
        `BatchSubscriber`); the wires of `wires` that are ``batched`` fan out through it."""
        ...

    def attach(self, listener: Listener) -> None:
        """`listener.on_close()` is called once when the stream ends; fed messages go to
        `listener.on_message`."""
        ...

    def feed(self, data: bytes) -> None:
        """One inbound message for the listener (bounded; held while reading is paused)."""
        ...

    def track(self, topics: list[str], prefix: bytes, slots: list[bytes]) -> None:
        """Name each event by the positions of `topics` (server/sse.py)."""
        ...


@dataclass(slots=True)
class StreamResponse(Response):
    """A response whose body is written by `start` for as long as the stream lasts."""

    start: Callable[[Stream], Awaitable[None]] | None = field(default=None, repr=False)
    # How the stream frames its payloads: SSE events, JSON lines or (Centrifuge
    # Protobuf) varint-delimited messages; `Stream.wires` is that framer's `WireSet`.
    framing: Literal["sse", "ndjson", "varint"] = "sse"
