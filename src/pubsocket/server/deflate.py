"""permessage-deflate (RFC 7692) with no compression state kept per connection.

**Negotiation** is websockets' own: `ServerPerMessageDeflateFactory` parses each offer
in ``Sec-WebSocket-Extensions`` and builds the response. We configure it with
``server_no_context_takeover`` and ``client_no_context_takeover``, which the server may
add to any response (RFC 7692 §7.1.1): every message is then compressed on its own, by
both sides. An offer the factory cannot accept (an unknown or duplicate parameter, a
bad value, ``server_max_window_bits=8``, which zlib cannot honour) is declined and the
next offer tried (§5); a header that does not parse fails the handshake (400).

**Outbound**, the hub's frames: with no context takeover a message's compressed bytes
depend only on the payload and the server's window size, so one compressed frame
serves every connection that negotiated the same ``server_max_window_bits``. Each such
parameter set has its own `WireSet` (`deflate_wires`), whose framer deflates with a
fresh compressor, strips the trailing ``00 00 ff ff`` and sets RSV1 (websockets'
`PerMessageDeflate.encode` does it, given ``local_no_context_takeover``), once per
broadcast, like gorilla's ``PreparedMessage`` and Centrifugo. Payloads shorter than
``compression_min_size`` go as plain text frames (RSV1 clear: allowed per message, §6).

**Inbound** is left to websockets' `PerMessageDeflate.decode`, the connection's
`Protocol` extension, called by websockets' parser or, for a whole compressed message
at a frame boundary, by the inbound fast path (`fastframes.inflate`). With
``client_no_context_takeover`` negotiated it creates a ``decompressobj`` at the first
frame of each compressed message and deletes it after the last (websockets 17.4, ``if
frame.fin and self.remote_no_context_takeover: del self.decoder``), so an idle
connection holds no zlib state. It inflates with
``decompress(data, max_length)``, ``max_length`` being what the message size limit
leaves, and raises `PayloadTooBig` (close 1009) when more would come out: a deflate
bomb costs at most the limit in memory. The same limit covers the pre-connect size of
Centrifuge endpoints, which set it through `set_max_message_size`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension

from ..errors import HTTPError
from ..framing import text_frame
from ..hub.wire import WireSet

_FACTORY = ServerPerMessageDeflateFactory(
    server_no_context_takeover=True, client_no_context_takeover=True)


def negotiate(offers: Sequence[str]) -> tuple[str, PerMessageDeflate] | None:
    """The ``Sec-WebSocket-Extensions`` response value and the connection's extension
    for the first permessage-deflate offer in the header values `offers` that can be
    accepted, or None (no offer, or none acceptable: the connection goes uncompressed).

    Raises `HTTPError` 400 when a header value does not parse.
    """
    try:
        parsed = [offer for value in offers for offer in parse_extension(value)]
    except InvalidHeader:
        raise HTTPError(400, "bad_handshake", "invalid Sec-WebSocket-Extensions") from None
    for name, params in parsed:
        if name != _FACTORY.name:
            continue  # other extensions are not supported: ignored
        try:
            response, extension = _FACTORY.process_request_params(params, [])
        except NegotiationError:
            continue  # declined; the client may have offered another parameter set
        return build_extension([(name, response)]), extension
    return None


class DeflateFramer:
    """``frame(payload)``: a text frame, compressed with a fresh compressor of
    `bits` window bits when `payload` has at least `min_size` bytes."""

    __slots__ = ("_encoder", "_min_size")

    def __init__(self, bits: int, min_size: int) -> None:
        # Stateless between calls: local_no_context_takeover makes encode() create its
        # compressor per message and drop it at the end (remote_* are unused here).
        self._encoder = PerMessageDeflate(True, True, 15, bits)
        self._min_size = min_size

    def __call__(self, payload: bytes) -> bytes:
        if len(payload) < self._min_size:
            return text_frame(payload)
        return Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[self._encoder])


_WIRE_SETS: dict[tuple[int, int], WireSet] = {}  # (server window bits, min size) -> set


def deflate_wires(bits: int, min_size: int) -> WireSet:
    """The shared `WireSet` of connections whose negotiated server window is `bits`
    (9-15): the hub compresses each publication once for all of them."""
    key = (bits, min_size)
    wires = _WIRE_SETS.get(key)
    if wires is None:
        wires = _WIRE_SETS[key] = WireSet(DeflateFramer(bits, min_size),
                                          f"ws-deflate-{bits}", batched=True)
    return wires


def negotiated(extensions: Sequence[object]) -> PerMessageDeflate | None:
    """The connection's permessage-deflate extension, if it negotiated one."""
    return next((e for e in extensions if isinstance(e, PerMessageDeflate)), None)


INFLATE_PER_TICK = 4 * 1024 * 1024  # bytes inflated per loop iteration, all connections
MAX_RATIO = 1032  # deflate's largest expansion: 258 bytes per 2-bit code, at best


class InflateBudget:
    """What compressed input may inflate to in one event-loop iteration, across every
    connection, so that a burst of deflate bombs does not hold the loop.

    One 8 KiB read can inflate to the message size limit (~2 ms of CPU per MiB here),
    so 200 sockets finishing a bomb in the same iteration held the loop ~0.5 s. Before
    parsing a read of compressed input, a connection asks `admit` with what the read
    can inflate to at most (`bound`); if it is not admitted it waits for the next
    iteration with reading paused. Reads that may inflate to more than an eighth of
    the budget share its first half; smaller reads (a chat message) may use all of it,
    so they pass a queue of bombs. The first read of an iteration is always admitted,
    so every connection progresses; a read is charged what it really inflated.
    """

    __slots__ = ("_loop", "_spent", "limit")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = INFLATE_PER_TICK) -> None:
        self._loop = loop
        self._spent = 0
        self.limit = limit

    @staticmethod
    def bound(size: int, max_message_size: int | None) -> int:
        """The most `size` compressed bytes can inflate to, one message's limit at most
        (a read holding several messages is charged in full afterwards)."""
        most = size * MAX_RATIO
        return min(most, max_message_size) if max_message_size else most

    def admit(self, bound: int) -> bool:
        """True when a read that may inflate to `bound` bytes may be parsed now."""
        if self._spent == 0:
            return True
        room = self.limit if bound <= self.limit // 8 else self.limit // 2
        return self._spent + bound <= room

    def charge(self, size: int) -> None:
        """Count `size` inflated bytes against this iteration."""
        if size <= 0:
            return
        if self._spent == 0:
            self._loop.call_soon(self._reset)  # the next iteration starts afresh
        self._spent += size

    def _reset(self) -> None:
        self._spent = 0
