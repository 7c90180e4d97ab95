"""`frames.park` / `revive` / `lone_pong`: an idle protocol is released only when it holds
nothing but its parameters, and the rebuilt one behaves the same (server/frames.py)."""

from __future__ import annotations

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Side
from websockets.typing import Subprotocol

from pubsocket.server.frames import FrameProtocol, lone_pong, park, ping_frame, revive


def proto(**attrs: object) -> FrameProtocol:
    p = FrameProtocol(Side.SERVER, max_size=4096)
    for name, value in attrs.items():
        setattr(p, name, value)
    return p


def masked(opcode: int, payload: bytes, fin: bool = True, key: bytes = b"\x01\x02\x03\x04"
           ) -> bytes:
    data = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    length = bytes((0x80 | n,)) if n < 126 else bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    return bytes(((0x80 if fin else 0) | opcode,)) + length + key + data


def test_a_fresh_protocol_parks_and_revives_with_its_parameters() -> None:
    codes = {1009: (3009, "too big")}
    p = proto(subprotocol=Subprotocol("pubsocket.v1"), close_codes=codes, min_compress=7)
    parked = park(p)
    assert parked is not None
    q = revive(parked)
    assert q is not p and q.state is OPEN
    assert (q.max_message_size, q.subprotocol, q.close_codes, q.min_compress) == (
        4096, "pubsocket.v1", codes, 7)
    q.receive_data(masked(0x1, b"x" * 5000))  # the size limit still holds after revival
    assert q.close_sent is not None and q.close_sent.code == 3009


def test_connections_of_one_endpoint_share_one_parked_tuple() -> None:
    assert park(proto()) is park(proto())


def test_after_a_whole_frame_it_parks_and_the_next_frame_parses() -> None:
    p = proto()
    p.receive_data(masked(0x1, b"hello"))
    assert [f.data for f in p.events_received() if isinstance(f, Frame)] == [b"hello"]
    parked = park(p)
    assert parked is not None
    q = revive(parked)
    q.receive_data(masked(0x1, b"again"))
    assert [f.data for f in q.events_received() if isinstance(f, Frame)] == [b"again"]


def test_nothing_in_progress_may_be_lost() -> None:
    half = proto()
    half.receive_data(masked(0x1, b"hello")[:4])  # half a header + key
    assert park(half) is None
    header_only = proto()
    header_only.receive_data(masked(0x1, b"hello")[:6])  # header and key, no payload
    assert park(header_only) is None and not header_only.reader.buffer
    fragmented = proto()
    fragmented.receive_data(masked(0x1, b"he", fin=False))
    fragmented.events_received()
    assert park(fragmented) is None  # a fragmented message in progress
    unread = proto()
    unread.receive_data(masked(0x1, b"hello"))
    assert park(unread) is None  # an event not taken yet
    closing = proto()
    closing.receive_data(masked(0x8, b"\x03\xe8"))
    closing.events_received()
    assert park(closing) is None  # not OPEN any more
    writing = proto()
    writing.send_text(b"queued")
    assert park(writing) is None  # bytes to send


def test_a_deflate_protocol_keeps_its_extension_object() -> None:
    factory = ServerPerMessageDeflateFactory()
    _, ext = factory.process_request_params([], [])
    p = proto(extensions=[ext])
    parked = park(p)
    assert parked is not None and parked is not park(proto(extensions=[ext]))  # not shared
    assert revive(parked).extensions == [ext] and revive(parked).extensions[0] is ext


def test_lone_pong_takes_exactly_one_whole_masked_pong() -> None:
    assert lone_pong(masked(0xA, b"abcd")) == b"abcd"
    assert lone_pong(masked(0xA, b"")) == b""
    assert lone_pong(masked(0xA, b"abcd")[:-1]) is None  # incomplete
    assert lone_pong(masked(0xA, b"abcd") + masked(0x1, b"x")) is None  # and more
    assert lone_pong(masked(0x9, b"abcd")) is None  # a ping
    assert lone_pong(masked(0x1, b"abcd")) is None  # text
    assert lone_pong(masked(0xA, b"abcd", fin=False)) is None
    unmasked = bytearray(masked(0xA, b"abcd"))
    unmasked[1] &= 0x7F
    assert lone_pong(bytes(unmasked)) is None


def test_ping_frame_is_what_websockets_sends() -> None:
    p = proto()
    p.send_ping(b"wxyz")
    assert p.data_to_send() == [ping_frame(b"wxyz")]
    assert Frame(Opcode.PING, b"wxyz").serialize(mask=False) == ping_frame(b"wxyz")
