"""`pubsocket.framing` writes exactly the frames websockets serializes."""

from __future__ import annotations

import pytest
from websockets.frames import Opcode

from pubsocket.framing import binary_frame, frame_payload, reference_frame, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000])
def test_frames_are_byte_for_byte_what_websockets_writes(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert text_frame(payload) == reference_frame(Opcode.TEXT, payload)
    assert binary_frame(payload) == reference_frame(Opcode.BINARY, payload)
    assert frame_payload(text_frame(payload)) == payload
