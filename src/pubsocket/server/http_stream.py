"""`HttpStream`: a streamed response of newline-delimited JSON or varint-delimited
Protobuf (Centrifuge's ``/connection/http_stream``, the ``pubsocket.v1`` HTTP
fallback), the native `pubsocket.web.streaming.Stream` of those routes.

The framers sit on the wire seam (hub/wire.py): a JSON payload becomes one line
(``payload + "\\n"``: the codecs never put a raw newline inside a message, and a
Centrifuge payload holding several replies, one per line, stays one reply per line);
a Centrifuge Protobuf payload is already a run of varint-length-prefixed replies, the
stream's own delimiting, so it is written as it is. Each is a `WireSet` shared by every
stream of its kind, so a broadcast is framed once per wire for all of them. Both are
``batched``: the hub queues one shared per-tick `Batch` to every stream of a topic group
and appends the tick's later publications to it, and a batch's bytes (its frames one
after the other) are a valid run of lines, or of length-delimited messages. The body is
delimited by the connection's end (``connection: close``, no chunked encoding), so a
write needs no framing of its own.

Everything else (one write per loop tick, outbound budget, write timeout, the
connection cap, fed commands) is `SseStream`'s.
"""

from __future__ import annotations

from typing import Any, Final

from ..hub.wire import WireSet
from .sse import SseStream
from .state import ServerState
from .writes import WriteQueue


def ndjson_frame(payload: bytes) -> bytes:
    """One line of a newline-delimited JSON stream."""
    return payload + b"\n"


def varint_frame(payload: bytes) -> bytes:
    """A Centrifuge Protobuf payload, already length-delimited (module docstring)."""
    return payload


NDJSON_WIRES: Final = WireSet(ndjson_frame, "ndjson", batched=True)
VARINT_WIRES: Final = WireSet(varint_frame, "varint", batched=True)


class HttpStream(SseStream):
    """`SseStream`'s write and read paths with another framer and no event ids."""

    __slots__ = ("wires",)

    def __init__(self, transport: Any, state: ServerState, wires: WireSet) -> None:
        self.wires = wires
        super().__init__(transport, state)
        self.binary = wires is VARINT_WIRES

    # Frames are queued as they are: no event ids here (and a varint prefix may start
    # with the bytes that are SSE headers).
    deliver = WriteQueue.deliver

    def frame(self, payload: bytes) -> bytes:
        return ndjson_frame(payload) if self.wires is NDJSON_WIRES else payload
