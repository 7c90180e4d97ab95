"""The native server's frame layer: websockets' sans-I/O protocol as we run it, and the
wires a native connection writes through (`hub.wire`: plain text, binary, or
permessage-deflate per negotiated parameter set, `server.deflate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from websockets.extensions import Extension
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side
from websockets.streams import StreamReader
from websockets.typing import Subprotocol

try:  # websockets' C unmasking when built (as websockets.frames imports it)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without the C extension
    from websockets.utils import apply_mask

from ..framing import binary_frame, text_frame
from ..hub.wire import WireSet
from ..web.websocket import translate_close
from .deflate import deflate_wires, negotiated


class FrameProtocol(Protocol):
    """websockets' sans-I/O protocol, accepting a close frame inside a fragmented message,
    and closing in the connection's wire protocol when it fails the connection itself.

    RFC 6455 allows control frames between fragments, and a close there ends the
    connection normally (Autobahn 7.1.5); websockets treats it as a protocol error.
    A frame over the size limit is refused by websockets from its header (1009): with
    `close_codes` set (Centrifuge), that close is translated as every other one is.
    """

    close_codes: Mapping[int, tuple[int, str]] | None = None
    min_compress = 0  # with permessage-deflate: shorter messages go uncompressed

    def send_frame(self, frame: Frame) -> None:
        # `send()` of a message under compression_min_size: plain, RSV1 clear (RFC 7692
        # §6 lets each message choose). Only whole data messages: a fragmented one would
        # leave websockets' encoder without its first frame.
        if (self.extensions and frame.fin and len(frame.data) < self.min_compress
                and frame.opcode in (Opcode.TEXT, Opcode.BINARY)):
            self.writes.append(frame.serialize(mask=False))
            return
        super().send_frame(frame)

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)

    def fail(self, code: int, reason: str = "") -> None:
        # Idempotent on translated codes: the protocol's own are not keys of the map.
        super().fail(*translate_close(self.close_codes, code, reason))


class Parked(NamedTuple):
    """What rebuilds an idle connection's `FrameProtocol` (see `park`)."""

    max_message_size: int | None
    max_fragment_size: int | None
    extensions: tuple[Extension, ...]  # the same objects: deflate's state lives there
    subprotocol: Subprotocol | None
    close_codes: Mapping[int, tuple[int, str]] | None
    min_compress: int


SHARED_PARKED = 256  # distinct parameter sets shared (endpoints x size limits), at most
_SHARED: dict[tuple[int | None, int | None, str | None, int, int], Parked] = {}
_PARSE = Protocol.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


def at_boundary(proto: FrameProtocol) -> bool:
    """True when `proto` holds nothing but its parameters: it is open, has no byte of a
    next frame, no fragmented message on either side, no event or write waiting, and
    its parser waits at a frame boundary (suspended in ``at_eof``, checked through the
    generator's documented ``gi_yieldfrom``). Then a new protocol built with the same
    parameters behaves exactly as it would (`park`), and a whole frame that starts the
    next bytes is parsed as it would be alone (`fastframes.split_frames`).
    """
    reader = proto.reader
    waiting = getattr(proto.parser, "gi_yieldfrom", None)
    return not (proto.state is not OPEN or reader.buffer or reader.eof or proto.events
                or proto.writes or proto.current_size is not None
                or proto.expect_continuation_frame or proto.parser_exc is not None
                or proto.close_rcvd is not None or proto.close_sent is not None
                or proto.eof_sent or getattr(proto.parser, "gi_code", None) is not _PARSE
                or getattr(waiting, "gi_code", None) is not _AT_EOF)


def park(proto: FrameProtocol) -> Parked | None:
    """The parameters that rebuild `proto`, when it holds nothing but them
    (`at_boundary`); else None.

    An idle connection's websockets `Protocol` is ~1.3 KiB: its ``__dict__``, a UUID, a
    `StreamReader`, the parser generator suspended on the next frame (holding the last
    frame parsed), three lists. Parked, it is rebuilt by `revive`, which behaves exactly
    as it would (only its log id differs).
    """
    if not at_boundary(proto):
        return None
    parked = Parked(proto.max_message_size, proto.max_fragment_size, tuple(proto.extensions),
                    proto.subprotocol, proto.close_codes, proto.min_compress)
    if parked.extensions:
        return parked  # deflate state of its own: not shared
    # Connections of one endpoint park the same parameters: one tuple serves them all.
    # The close-code map is the endpoint's own object (a dict: keyed by identity, which
    # the cached tuple keeps alive, so the id is never reused while the key exists).
    key = (parked.max_message_size, parked.max_fragment_size, parked.subprotocol,
           id(parked.close_codes), parked.min_compress)
    shared = _SHARED.get(key)
    if shared is None and len(_SHARED) < SHARED_PARKED:
        shared = _SHARED[key] = parked
    return shared or parked


def revive(parked: Parked) -> FrameProtocol:
    """A fresh open protocol with `parked`'s parameters (see `park`)."""
    proto = FrameProtocol(Side.SERVER,
                          max_size=(parked.max_message_size, parked.max_fragment_size))
    proto.extensions = list(parked.extensions)
    proto.subprotocol = parked.subprotocol
    if parked.close_codes is not None:
        proto.close_codes = parked.close_codes
    if parked.min_compress:
        proto.min_compress = parked.min_compress
    return proto


def ping_frame(payload: bytes) -> bytes:
    """A server PING frame (control frames are never compressed: RFC 7692 §6.1)."""
    return Frame(Opcode.PING, payload).serialize(mask=False)


def lone_pong(data: bytes) -> bytes | None:
    """The payload when `data` is exactly one whole masked PONG frame (what a client
    answers a keepalive ping with), else None: a parked connection takes it without
    rebuilding its protocol. Anything else goes to websockets' parser."""
    if len(data) < 6 or data[0] != 0x8A or data[1] & 0x80 == 0:
        return None
    length = data[1] & 0x7F
    if length > 125 or len(data) != 6 + length:
        return None
    return apply_mask(data[6:], data[2:6])


# Native connections write shared `Batch` es (WSConnection.deliver_batch): batched wires.
TEXT_WIRES = WireSet(text_frame, "ws-text", batched=True)  # plain text frames
BINARY_WIRES = WireSet(binary_frame, "ws-binary", batched=True)  # ... binary protocols


def choose_wires(proto: Protocol, min_size: int) -> WireSet:
    """A native connection's `WireSet`: text frames, deflated for its negotiated
    permessage-deflate parameters when it has them (shared by every connection with
    the same parameters, so a publication is compressed once for all of them)."""
    deflate = negotiated(proto.extensions)
    if deflate is None:
        return TEXT_WIRES
    return deflate_wires(deflate.local_max_window_bits, min_size)
