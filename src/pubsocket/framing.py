"""WebSocket framing of outbound text messages, shared by the transports.

The hub frames each publication once per codec and hands the same bytes to every
subscriber (`Hub(frame=...)` takes this function); the native transport writes them as
they are and the ASGI adapter takes the payload back out (`frame_payload`). No I/O here.
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode


def text_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client text frame carrying `payload` (framed by websockets)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


def binary_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client binary frame carrying `payload`."""
    return Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame made by `text_frame` or `binary_frame` (unmasked,
    unfragmented, no extensions)."""
    length = frame[1] & 0x7F
    return frame[2 + (2 if length == 126 else 8 if length == 127 else 0):]
