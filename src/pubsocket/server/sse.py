"""`SseStream`: a streamed ``text/event-stream`` response on the native server.

Framing (`sse_frame`, the wire's framer, once per broadcast): a payload becomes one
event, ``data: <payload>\\n\\n`` (a newline inside the JSON, only ever whitespace,
continues on another ``data:`` line). A header the codec put first
(protocols/centrifuge/uni_sse.py) is kept ahead of the event for the stream to read.

Event ids (per connection, the one per-connection cost): the stream knows its channels
in the order the client listed them, and each one's last position; an event that moves
a position gets ``id: <prefix>;<offset>:<epoch>;...`` with every channel's position
("" for a channel without history), so a browser `EventSource` that reconnects by
itself sends a ``Last-Event-ID`` describing all of them. Building it costs O(channels)
bytes per event (bounded by ``MAX_SUBSCRIPTIONS`` and the connect request's size);
the event body stays the shared bytes.

Write side, a WebSocket's (`WriteQueue`, server/writes.py): frames and the hub's shared
per-tick `Batch` es (the wires are ``batched``) queue for one write per loop tick; past
`outbound_budget` unsent bytes the client is a slow consumer and the connection is
aborted (EventSource reconnects with its last id and resumes); a buffer that does not
shrink for `write_timeout` seconds is aborted too. A batch's bytes are its events one
after the other, each ending in its blank line, so they are a valid run of events.
The unidirectional codec's events are the exception (`SseWires`): their ids are made
per stream as each event is queued, so its wire is not batched. What the client sends
after its request is discarded, up to 64 KiB, then the connection is aborted.

Read side of an emulated bidirectional stream (Centrifuge ``/connection/sse`` and
``/connection/http_stream``, the ``pubsocket.v1`` HTTP fallback): the commands come
from POSTs, which the hub's relay hands to `feed` (server/http_stream.py). They reach
the session as WebSocket messages would, under the same message size limit; while the
session has paused reading, up to `MAX_HELD` messages wait here, and one more closes
the stream (a client that floods POSTs faster than its commands run).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import formatdate
from typing import Any

from ..codecs import Codec
from ..errors import CloseCode
from ..hub.wire import WireSet
from ..log import refusals
from ..protocols.centrifuge import CLOSE_CODES
from ..protocols.centrifuge.uni_sse import END, POSITION, UniSseCodec, disconnect
from ..web.streaming import StreamResponse
from ..web.websocket import Listener, translate_close
from .state import ServerState
from .writes import WriteQueue

log = logging.getLogger("pubsocket.server")

MAX_INBOUND = 64 * 1024  # bytes a streaming client may send after its request
MAX_HELD = 32  # fed messages waiting while the session has paused reading
ENDS = END[:1]  # the first byte of an end-the-stream header


def sse_frame(payload: bytes) -> bytes:
    """One SSE event for `payload` (module docstring), its codec header kept first."""
    head = b""
    if payload[:1] in (POSITION, END[:1]):
        cut = payload.index(b"\n") + 1
        head, payload = payload[:cut], payload[cut:]
    if b"\n" in payload or b"\r" in payload:
        payload = (payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                   .replace(b"\n", b"\ndata: "))
    return head + b"data: " + payload + b"\n\n"


class SseWires(WireSet):
    """`WireSet` of `sse_frame`: batched, but for the unidirectional codec, whose events
    get their ids from each stream as they are queued (`SseStream.deliver`)."""

    __slots__ = ()

    def batches(self, codec: Codec) -> bool:
        return not isinstance(codec, UniSseCodec)


SSE_WIRES = SseWires(sse_frame, "sse", batched=True)


class SseStream(WriteQueue, asyncio.Protocol):
    """The native `pubsocket.web.streaming.Stream` (see its contract)."""

    wires: WireSet = SSE_WIRES

    __slots__ = (
        "_closing",
        "_held",
        "_inbound",
        "_index",
        "_listener",
        "_max_size",
        "_prefix",
        "_slots",
        "_state",
        "_transport",
        "binary",
        "close_codes",
        "farewell",
    )

    def __init__(self, transport: Any, state: ServerState) -> None:
        self._transport = transport
        self._state = state
        self._out = None
        self._hub_frames = False
        self._closing = False
        self._listener: Listener | None = None
        self._index: dict[bytes, int] = {}
        self._slots: list[bytes] = []
        self._prefix = b""
        self._inbound = 0
        self._stall = None
        self._held: deque[bytes] | None = None  # set while reading is paused
        self._max_size = state.settings.max_message_size
        self.binary = False  # fed messages reach the session as bytes (else str)
        self.close_codes: Mapping[int, tuple[int, str]] | None = None
        # The payload (before framing) telling the client why the stream ends; None:
        # the unidirectional Centrifuge disconnect push.
        self.farewell: Callable[[int, str], bytes | None] | None = None
        state.streams.add(self)
        transport.set_protocol(self)

    # -- the Stream / Peer contract --------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closing

    def attach(self, listener: Listener) -> None:
        self._listener = listener

    def track(self, topics: list[str], prefix: bytes, slots: list[bytes]) -> None:
        """Channels in the client's order, the id's `prefix` and their positions so far."""
        self._index = {t.encode(): i for i, t in enumerate(topics)}
        self._prefix = prefix
        self._slots = slots

    def deliver(self, frame: bytes) -> None:
        """Queue one framed event (an id made for it when it moves a position)."""
        first = frame[:1]
        if first != POSITION and first != ENDS:
            WriteQueue.deliver(self, frame)
            return
        if self._closing:
            self._state.stats.dropped += 1
            return
        self._hub_frames = True
        if first == ENDS:
            self._queue(frame[2:])
            self._end()
            return
        mid, cut = frame.index(b"\x00", 1), frame.index(b"\n")
        slot = self._index.get(frame[1:mid])
        if slot is None:
            self._queue(frame[cut + 1:])
            return
        slots = self._slots
        slots[slot] = frame[mid + 1:cut]
        self._queue(b"id: " + self._prefix + b";" + b";".join(slots) + b"\n")
        # The shared event bytes are not copied here: a view of them goes in the queue
        # behind this stream's id line, and the flush's join copies once.
        self._queue(memoryview(frame)[cut + 1:])

    def close_nowait(self, code: int, reason: str = "") -> None:
        """Say why (`farewell`, else a unidirectional disconnect push), then end."""
        if self._closing:
            return
        if self.farewell is None:  # unidirectional Centrifuge
            payload: bytes | None = disconnect(*translate_close(CLOSE_CODES, code, reason))
        else:
            payload = self.farewell(*translate_close(self.close_codes, code, reason))
        if payload is not None:
            self.deliver(self.frame(payload))
        self._end()

    def frame(self, payload: bytes) -> bytes:
        """`payload` as this stream's framer writes it."""
        return sse_frame(payload)

    def feed(self, data: bytes) -> None:
        """One inbound message for the session (a POSTed command batch): like a
        WebSocket message, it is bounded by the message size (1009) and waits while
        reading is paused (module docstring)."""
        if self._closing or self._listener is None:
            return
        size = self._max_size
        if size and len(data) > size:
            self.close_nowait(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        held = self._held
        if held is not None:
            if len(held) >= MAX_HELD:
                refusals.warn("stream_held", self._peer())
                self.close_nowait(CloseCode.RATE_LIMITED, "too many commands waiting")
                return
            held.append(data)
            return
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        listener = self._listener
        if listener is None or self._closing:
            return
        stats = self._state.stats
        stats.messages_in += 1
        stats.bytes_in += len(data)
        if self.binary:
            listener.on_message(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self.close_nowait(CloseCode.INVALID_DATA, "invalid UTF-8")
            return
        listener.on_message(text)

    def pause_reading(self) -> None:
        """Hold fed messages until `resume_reading`."""
        if self._held is None:
            self._held = deque()

    def resume_reading(self) -> None:
        """Pass the held messages on, from the loop (never inside the session's call)."""
        if self._held is not None:
            self._state.loop.call_soon(self._drain_held)

    def _drain_held(self) -> None:
        held, self._held = self._held, None
        while held and self._held is None and not self._closing:
            self._receive(held.popleft())
        if held and self._held is not None:  # paused again: the rest keeps its order
            held.extend(self._held)
            self._held = held

    def set_max_message_size(self, size: int) -> None:
        """The size limit of fed messages from the next one on (0: none)."""
        self._max_size = size

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        raise TypeError("a stream receives nothing")

    # -- asyncio.Protocol --------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._inbound += len(data)
        if self._inbound > MAX_INBOUND:
            refusals.warn("sse_inbound", self._peer())
            self._transport.abort()

    def eof_received(self) -> bool:
        return False  # the client is gone: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._out = None
        self._held = None
        self.resume_writing()
        self._state.streams.discard(self)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.on_close()

    # -- writing -----------------------------------------------------------------------
    def _cut_slow(self, budget: int) -> None:
        log.info("aborting a slow stream consumer (outbound buffer over %d bytes)", budget)
        self._closing = True
        self._transport.abort()

    def _end(self) -> None:
        """Write what is queued (under the budget, as any write), then close (abort if
        it is still unsent after `write_timeout`, so a client that never reads never
        pins the stream)."""
        self._flush()
        self._closing = True
        transport = self._transport
        transport.close()
        timeout = self._state.settings.write_timeout
        if timeout and transport.get_write_buffer_size():
            self._state.loop.call_later(timeout, transport.abort)

    def _peer(self) -> str:
        peer = self._transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


async def serve_stream(transport: Any, state: ServerState, response: StreamResponse,
                       reason: str) -> None:
    """Write the head of a streamed response, make the connection an `SseStream` and
    run ``response.start`` on it (web/streaming.py)."""
    lines = [f"HTTP/1.1 {response.status} {reason}",
             f"content-type: {response.content_type}",
             f"date: {formatdate(usegmt=True)}", "server: pubsocket", "connection: close"]
    lines += [f"{k}: {v}" for k, v in response.headers]
    # The head alone: no blank line or comment ahead of the first event (Node's
    # `eventsource` 2.x drops an event that shares a chunk with a leading CRLF).
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    stream: SseStream
    if response.framing == "sse":
        stream = SseStream(transport, state)
    else:  # server/http_stream.py (imported here: it builds on this module)
        from .http_stream import NDJSON_WIRES, VARINT_WIRES, HttpStream
        stream = HttpStream(transport, state, NDJSON_WIRES if response.framing == "ndjson"
                            else VARINT_WIRES)
    transport.resume_reading()
    if response.start is not None:
        try:
            await response.start(stream)
        except Exception:
            log.exception("a stream failed to start")
            stream.close_nowait(CloseCode.INTERNAL_ERROR, "internal error")
