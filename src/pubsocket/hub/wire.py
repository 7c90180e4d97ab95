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

MAX_BATCH = 256  # frames in one shared batch before the next publication starts another


class Batch(list[bytes]):
    """The frames one topic's subscriber group (one wire) got in one loop tick, shared by
    every subscriber of the group: the hub queues the batch once per subscriber at its
    first frame and appends the tick's later frames to it, so each further publication
    costs O(1) instead of one `deliver` per subscriber (wires with ``batched`` only).

    Order is kept: a batch takes frames only while it is `open`. It closes when a
    subscriber of it queues anything else after it (`close`), when the group changes,
    when it is joined for the write (`joined`), or at `MAX_BATCH` frames; the next
    publication then starts a new batch.
    """

    __slots__ = ("data", "open")

    def __init__(self, frame: bytes) -> None:
        super().__init__((frame,))
        self.open = True
        self.data: bytes | None = None

    def joined(self) -> bytes:
        """The frames as one bytes object (made once, shared by every subscriber);
        closes the batch."""
        data = self.data
        if data is None:
            self.open = False
            data = self.data = self[0] if len(self) == 1 else b"".join(self)
        return data


class Wire:
    """A codec with a framer. Compared by identity: equal wires are the same object
    (get them from a `WireSet`), so a topic's subscriber groups stay few."""

    __slots__ = ("batched", "codec", "frame", "kind")

    def __init__(self, codec: Codec, frame: Framer, kind: str, batched: bool = False) -> None:
        """`frame(payload) -> bytes` must be pure and cheap to call once per broadcast;
        `kind` names the framing for logs and metrics (e.g. ``"ws-text"``, ``"asgi"``).
        `batched`: every subscriber of this wire also has ``deliver_batch(batch)``
        (`BatchSubscriber`), and the hub fans out through shared `Batch` es."""
        self.codec = codec
        self.frame = frame
        self.kind = kind
        self.batched = batched

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

    __slots__ = ("_batched", "_frame", "_kind", "_wires")

    def __init__(self, frame: Framer, kind: str, batched: bool = False) -> None:
        self._frame = frame
        self._kind = kind
        self._batched = batched
        self._wires: dict[Codec, Wire] = {}

    def __call__(self, codec: Codec) -> Wire:
        wire = self._wires.get(codec)
        if wire is None:
            wire = self._wires[codec] = Wire(codec, self._frame, self._kind,
                                             self._batched and self.batches(codec))
        return wire

    def batches(self, codec: Codec) -> bool:
        """Whether `codec`'s wire shares batches, in a batched set (all do, unless a
        subclass says otherwise for a codec whose frames differ per subscriber)."""
        return True


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
