"""`Wire`: how bytes are prepared for one kind of connection (a codec x a framer).

The hub's one hot-path seam. A **codec** turns a publication or a reply into a payload
(the protocol: plain seed JSON, ``pubsocket.v1``, Centrifuge); a **framer** turns that
payload into the bytes the transport writes (a WebSocket text frame on the native
server, the payload itself under ASGI, where the ASGI server frames; later a compressed
or binary frame, an SSE event). The transport picks a connection's wire at accept, from
a small set it shares between connections (`WireSet`), so the hub can group
subscribers by wire: it encodes each publication once per codec in use and frames it
once per wire, then hands the same bytes to every subscriber of that wire. Sessions
write every reply through their wire as well.

The framer is opaque here: nothing under `hub/` knows WebSocket framing (the layering
test checks that no hub module imports ``websockets`` or ``pubsocket.framing``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..codecs import Codec

Framer = Callable[[bytes], bytes]


class Wire:
    """A codec with a framer. Compared by identity: equal wires are the same object
    (get them from a `WireSet`), so a topic's subscriber groups stay few."""

    __slots__ = ("codec", "frame", "kind")

    def __init__(self, codec: Codec, frame: Framer, kind: str) -> None:
        """`frame(payload) -> bytes` must be pure and cheap to call once per broadcast;
        `kind` names the framing for logs and metrics (e.g. ``"ws-text"``, ``"asgi"``)."""
        self.codec = codec
        self.frame = frame
        self.kind = kind

    def encode(self, payload: bytes) -> bytes:
        """`payload` (the codec's output) as the transport writes it."""
        return self.frame(payload)

    def __repr__(self) -> str:
        return f"Wire({self.codec.name}, {self.kind})"


def identity(payload: bytes) -> bytes:
    """The framer of transports that frame for themselves (ASGI, tests)."""
    return payload


class WireSet:
    """One framer's wires, one per codec, made on first use and shared after."""

    __slots__ = ("_frame", "_kind", "_wires")

    def __init__(self, frame: Framer, kind: str) -> None:
        self._frame = frame
        self._kind = kind
        self._wires: dict[Codec, Wire] = {}

    def __call__(self, codec: Codec) -> Wire:
        wire = self._wires.get(codec)
        if wire is None:
            wire = self._wires[codec] = Wire(codec, self._frame, self._kind)
        return wire


_SERVER_SIDE: dict[Wire, Wire] = {}


def server_side(wire: Wire) -> Wire:
    """The wire for server-side subscriptions of `wire`'s connections: the same framer
    with the codec's `Codec.server_side` twin (`wire` itself when they are one). Made
    once per wire and shared, like the wires of a `WireSet` (so as few as they are)."""
    twin = _SERVER_SIDE.get(wire)
    if twin is None:
        codec = wire.codec.server_side()
        twin = _SERVER_SIDE[wire] = (wire if codec is wire.codec
                                     else Wire(codec, wire.frame, wire.kind))
    return twin


RAW = WireSet(identity, "raw")  # payloads as they are (ASGI; tests that read payloads)
