"""`fastframes.split_frames` takes exactly the leading whole single-frame messages, and
`fast_limit` allows it only where websockets' parser is at a frame boundary with no
extension but permessage-deflate; compressed frames are inflated (`inflate`) and their
errors fail the connection (`fail_as_parser`) exactly as websockets' parser does
(server/fastframes.py; end to end: tests/app/test_fast_frames.py, test_fast_deflate.py).
"""

from __future__ import annotations

import zlib

import pytest
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.protocol import Side

from pubsocket.server.fastframes import (
    BINARY,
    DEFLATED,
    PONG,
    TEXT,
    cut_short,
    fail_as_parser,
    fast_limit,
    inflate,
    split_frames,
)
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


def test_fast_limit_only_at_a_frame_boundary_with_no_extension_but_deflate() -> None:
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
    assert fast_limit(deflate, None) == 4096  # permessage-deflate: inflated by `inflate`
    deflate_parked = park(deflate)
    assert deflate_parked is not None and fast_limit(None, deflate_parked) == 4096
    deflate.receive_data(deflated([b"half"], fin=False)[0])  # a compressed message begun
    deflate.events_received()
    assert ext.decode_cont_data and fast_limit(deflate, None) == -1
    ext.decode_cont_data = False  # (as after its last frame)

    class Other(PerMessageDeflate):  # an extension whose decode we do not know
        pass

    other = FrameProtocol(Side.SERVER, max_size=4096)
    other.extensions = [Other(True, True, 15, 15)]
    assert fast_limit(other, None) == -1


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


def deflated(messages: list[bytes], takeover: bool = False, fin: bool = True) -> list[bytes]:
    """Masked compressed client frames (RSV1 set), one per message; with `takeover` one
    compressor for all (each may refer to the ones before), else a fresh one each."""
    frames = []
    shared = zlib.compressobj(wbits=-15)
    for message in messages:
        c = shared if takeover else zlib.compressobj(wbits=-15)
        data = (c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        wire = Frame(Opcode.TEXT, data, fin=fin).serialize(mask=True)
        frames.append(bytes((wire[0] | 0x40,)) + wire[1:])
    return frames


def twins(takeover: bool, max_size: int | None = 4096
          ) -> tuple[FrameProtocol, FrameProtocol, list[Extension]]:
    """websockets' protocol with a permessage-deflate extension, and another protocol
    with its own extension of the same parameters, for the fast path to use."""
    def one() -> PerMessageDeflate:
        return PerMessageDeflate(not takeover, True, 15, 15)
    theirs, ours = (FrameProtocol(Side.SERVER, max_size=max_size) for _ in range(2))
    theirs.extensions, ours.extensions = [one()], [one()]
    return theirs, ours, ours.extensions


def received(proto: FrameProtocol) -> list[bytes]:
    """The payloads of the frames websockets' parser handed over."""
    return [bytes(f.data) for f in proto.events_received() if isinstance(f, Frame)]


def fast(data: bytes, extensions: list[Extension], limit: int = 4096) -> list[bytes]:
    end, frames = split_frames(data, limit, 64, BIG, deflate=True)
    assert end == len(data)
    return [inflate(extensions, payload, opcode, limit) if opcode & DEFLATED else payload
            for payload, opcode in frames]


@pytest.mark.parametrize("takeover", [True, False])
def test_inflate_decodes_what_websockets_decodes_with_or_without_takeover(
        takeover: bool) -> None:
    words = b" ".join(b"word%d" % n for n in range(60))
    messages = [words, words, "é€😀".encode() * 20, b"", words]
    data = deflated(messages, takeover)
    if takeover:  # a repeated message is a few bytes only with the previous one's context
        assert len(data[1]) < 16 < 100 < len(data[0])
    else:
        assert len(data[1]) == len(data[0]) > 100
    theirs, _ours, extensions = twins(takeover)
    theirs.receive_data(b"".join(data))
    assert received(theirs) == messages
    assert fast(b"".join(data[:2]), extensions) == messages[:2]
    # an uncompressed message between compressed ones (RSV1 clear: RFC 7692 §6)
    plain = Frame(Opcode.BINARY, b"plain").serialize(mask=True)
    assert fast(plain + b"".join(data[2:]), extensions) == [b"plain", *messages[2:]]


def test_split_frames_takes_rsv1_frames_only_on_a_deflate_connection() -> None:
    (z,) = deflated([b"hello"])
    zbin = bytes((0xC2,)) + z[1:]
    compressed = bytes(b ^ z[2 + i % 4] for i, b in enumerate(z[6:]))  # unmasked
    assert zlib.decompressobj(wbits=-15).decompress(compressed + b"\0\0\xff\xff") == b"hello"
    assert split_frames(z, BIG, 64, BIG) == (0, [])  # no extension: websockets' (1002)
    assert split_frames(z + zbin, BIG, 64, BIG, deflate=True) == (
        2 * len(z), [(compressed, TEXT | DEFLATED), (compressed, BINARY | DEFLATED)])
    assert cut_short(z[:3], 0, BIG, BIG, deflate=True) and not cut_short(z[:3], 0, BIG, BIG)
    for head in (0xE1, 0xD1, 0xA1, 0x91, 0x41, 0xC9, 0xCA, 0xC0):  # RSV2/3, no FIN, control
        other = bytes((head,)) + z[1:]
        assert split_frames(other, BIG, 64, BIG, deflate=True) == (0, []), hex(head)
        assert not cut_short(other[:3], 0, BIG, BIG, deflate=True), hex(head)


@pytest.mark.parametrize(("case", "code"), [
    ("bomb", 1009), ("corrupt", 1002), ("takeover", 1002)])
def test_errors_fail_the_connection_as_websockets_parser_does(case: str, code: int) -> None:
    theirs, ours, extensions = twins(takeover=False, max_size=1000)
    if case == "bomb":  # within the limit on the wire, far over it inflated
        data = deflated([b"ok", b"\0" * 1_000_000])
    elif case == "corrupt":
        wire = Frame(Opcode.TEXT, b"\xff\xfe\xfd not deflate").serialize(mask=True)
        data = [*deflated([b"ok"]), bytes((0xC1,)) + wire[1:]]
    else:  # the client refers to a previous message despite client_no_context_takeover
        data = deflated([b"same words " * 9] * 2, takeover=True)
    assert len(data[1]) < 1000
    first = b"same words " * 9 if case == "takeover" else b"ok"
    theirs.receive_data(b"".join(data))
    assert received(theirs) == [first]  # then it failed
    end, frames = split_frames(b"".join(data), 1000, 64, BIG, deflate=True)
    assert end == len(b"".join(data)) and len(frames) == 2
    assert inflate(extensions, frames[0][0], frames[0][1], 1000) == first
    with pytest.raises(PayloadTooBig if code == 1009 else ProtocolError) as raised:
        inflate(extensions, frames[1][0], frames[1][1], 1000)
    fail_as_parser(ours, raised.value)
    assert type(ours.parser_exc) is type(theirs.parser_exc)
    assert str(ours.parser_exc) == str(theirs.parser_exc)
    assert ours.close_sent == theirs.close_sent and ours.close_sent is not None
    assert ours.close_sent.code == code
    assert ours.data_to_send() == theirs.data_to_send()  # the close, then EOF
    assert ours.state is theirs.state
    ours.receive_data(b"more")  # discarded after the failure, as websockets' is
    assert ours.events_received() == []
