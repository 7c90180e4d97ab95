"""`fastframes.split_frames` takes exactly the leading whole single-frame messages, and
`fast_limit` allows it only where websockets' parser is at a frame boundary with no
extension (server/fastframes.py; the end-to-end comparison is tests/app/test_fast_frames.py).
"""

from __future__ import annotations

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.protocol import Side

from pubsocket.server.fastframes import BINARY, PONG, TEXT, cut_short, fast_limit, split_frames
from pubsocket.server.frames import FrameProtocol, park

BIG = 1 << 63


def masked(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


def test_whole_text_and_binary_frames_are_taken_in_order() -> None:
    data = (masked(Opcode.TEXT, b"a") + masked(Opcode.BINARY, b"\x00" * 200)
            + masked(Opcode.TEXT, b"z" * 70000))
    assert split_frames(data, BIG, 64, BIG) == (
        len(data), [(b"a", TEXT), (b"\x00" * 200, BINARY), (b"z" * 70000, TEXT)])


def test_the_run_stops_at_the_first_frame_of_another_shape() -> None:
    one = masked(Opcode.TEXT, b"one")
    for other in (masked(Opcode.PING, b"p"), masked(Opcode.CLOSE, b"\x03\xe8"),
                  masked(Opcode.TEXT, b"part", fin=False), masked(Opcode.CONT, b"c"),
                  bytes((0xC1,)) + masked(Opcode.TEXT, b"rsv")[1:],  # RSV1 set
                  Frame(Opcode.TEXT, b"unmasked").serialize(mask=False)):
        assert split_frames(one + other + one, BIG, 64, BIG) == (len(one), [(b"one", TEXT)])
    for cut in (masked(Opcode.TEXT, b"cut")[:-1], masked(Opcode.TEXT, b"y" * 300)[:3],
                masked(Opcode.TEXT, b"y" * 70000)[:9], b"\x81"):  # partial: at the end
        assert split_frames(one + cut, BIG, 64, BIG) == (len(one), [(b"one", TEXT)])


def test_pongs_are_taken_with_the_messages_around_them() -> None:
    # A client's keepalive answer often shares a read with its next message.
    data = masked(Opcode.PONG, b"abcd") + masked(Opcode.TEXT, b"next") + masked(Opcode.PONG, b"")
    assert split_frames(data, BIG, 64, BIG) == (
        len(data), [(b"abcd", PONG), (b"next", TEXT), (b"", PONG)])
    # Not a PONG of the one valid shape: websockets' (a control frame over 125 bytes, or
    # with a 16-bit length, is a protocol error there; a fragmented one too)
    long_pong = bytes((0x8A, 0x80 | 126)) + (126).to_bytes(2, "big") + b"mask" + b"p" * 126
    unfinished = bytes((0x0A,)) + masked(Opcode.PONG, b"p")[1:]  # FIN clear
    for other in (long_pong, unfinished):
        assert split_frames(other, BIG, 64, BIG) == (0, [])
        assert not cut_short(other[:5], 0, BIG, BIG)
    assert cut_short(masked(Opcode.PONG, b"abcd")[:4], 0, BIG, BIG)


def test_limits_on_size_count_and_bytes() -> None:
    frame = masked(Opcode.TEXT, b"x" * 10)  # 16 bytes
    assert split_frames(frame, 10, 64, BIG) == (16, [(b"x" * 10, TEXT)])
    assert split_frames(frame, 9, 64, BIG) == (0, [])  # over the size limit: websockets'
    assert split_frames(frame * 5, BIG, 3, BIG)[0] == 48  # at most 3 frames
    assert split_frames(frame * 5, BIG, 64, 40)[0] == 32  # only frames ending within 40
    assert split_frames(b"", BIG, 64, BIG) == (0, [])


def test_fast_limit_only_at_a_frame_boundary_without_extensions() -> None:
    proto = FrameProtocol(Side.SERVER, max_size=(4096, 1000))
    assert fast_limit(proto, None) == 1000  # the smaller of message and fragment limits
    parked = park(proto)
    assert parked is not None and fast_limit(None, parked) == 1000
    assert fast_limit(FrameProtocol(Side.SERVER, max_size=None), None) == BIG
    proto.receive_data(masked(Opcode.TEXT, b"half", fin=False))
    proto.events_received()
    assert fast_limit(proto, None) == -1  # a fragmented message in progress
    partial = FrameProtocol(Side.SERVER, max_size=4096)
    partial.receive_data(masked(Opcode.TEXT, b"hello")[:3])
    assert fast_limit(partial, None) == -1  # a frame begun
    _, ext = ServerPerMessageDeflateFactory().process_request_params([], [])
    deflate = FrameProtocol(Side.SERVER, max_size=4096)
    deflate.extensions = [ext]
    assert fast_limit(deflate, None) == -1
    deflate_parked = park(deflate)
    assert deflate_parked is not None and fast_limit(None, deflate_parked) == -1


def test_cut_short_is_the_beginning_of_a_frame_split_frames_would_take() -> None:
    short, wide = masked(Opcode.TEXT, b"x" * 100), masked(Opcode.BINARY, b"y" * 1000)
    for frame in (short, wide):
        for cut in range(1, len(frame)):
            assert cut_short(b"ab" + frame[:cut], 2, BIG, BIG)
        assert not cut_short(b"ab" + frame, 2, BIG, BIG)  # whole: split_frames' business
    assert not cut_short(wide[:50], 0, 999, BIG)  # over the size limit: websockets'
    assert not cut_short(wide[:50], 0, BIG, 1000)  # longer than a slice: websockets'
    assert cut_short(wide[:3], 0, 999, 1000)  # the length is not known yet
    assert not cut_short(masked(Opcode.PING, b"p")[:3], 0, BIG, BIG)
    assert not cut_short(masked(Opcode.TEXT, b"part", fin=False)[:3], 0, BIG, BIG)
    assert not cut_short(Frame(Opcode.TEXT, b"unmasked").serialize(mask=False)[:3], 0,
                         BIG, BIG)
    assert not cut_short(b"", 0, BIG, BIG)
