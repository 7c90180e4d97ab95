"""WebSocket framing of outbound text messages, shared by the transports.

The hub frames each publication once per codec and hands the same bytes to every
subscriber (`Hub(frame=...)` takes this function); the native transport writes them as
they are and the ASGI adapter takes the payload back out (`frame_payload`). No I/O here.
"""

from __future__ import annotations

import struct

from websockets.frames import Frame, Opcode

_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_FIN_TEXT = 0x80 | int(Opcode.TEXT)  # plain ints: enum arithmetic costs a call
_FIN_BINARY = 0x80 | int(Opcode.BINARY)


def _unmasked(first: int, payload: bytes) -> bytes:
    # The header of RFC 6455 §5.2 for an unmasked, unfragmented frame without RSV bits:
    # exactly what websockets' `Frame.serialize(mask=False)` writes (tests/unit/
    # test_framing.py compares the two), at a tenth of its cost, once per publication.
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _SHORT.pack(first, 126, n) + payload
    return _LONG.pack(first, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client text frame carrying `payload`."""
    n = len(payload)
    if n < 126:  # `_unmasked`'s first case inline: once per publication and wire
        return bytes((_FIN_TEXT, n)) + payload
    return _unmasked(_FIN_TEXT, payload)


def binary_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client binary frame carrying `payload`."""
    return _unmasked(_FIN_BINARY, payload)


def reference_frame(opcode: Opcode, payload: bytes) -> bytes:
    """The same frame as websockets serializes it (the reference the tests compare to)."""
    return Frame(opcode, payload).serialize(mask=False, extensions=[])


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame made by `text_frame` or `binary_frame` (unmasked,
    unfragmented, no extensions)."""
    length = frame[1] & 0x7F
    return frame[2 + (2 if length == 126 else 8 if length == 127 else 0):]
