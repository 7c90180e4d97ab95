"""The native server's frame layer: websockets' sans-I/O protocol as we run it, and the
wires a native connection writes through (`hub.wire`: plain text, binary, or
permessage-deflate per negotiated parameter set, `server.deflate`).
"""

from __future__ import annotations

from collections.abc import Mapping

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol

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
