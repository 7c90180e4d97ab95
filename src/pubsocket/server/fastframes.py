"""The inbound fast path: whole single-frame messages split without websockets' parser.

A publication arrives as one masked TEXT (or BINARY) frame with FIN set: for that one
shape websockets' generator-based parser (`Protocol.receive_data` / `events_received`)
costs ~2.4 µs per frame on an idle box; splitting the header here and unmasking with
websockets' own C `apply_mask` (``websockets.speedups``) costs ~0.4-0.7 µs (docs/design.md
"Cost model: one delivery"). `split_frames` takes only frames that websockets would hand
over as one whole ``Frame`` and nothing else: at a frame boundary of websockets' parser,
payload within the size limit it would apply there, RSV2-3 clear, and RSV1 clear unless
the connection negotiated permessage-deflate. A compressed frame (RSV1 set) is inflated
by `inflate` through the connection's own extension objects, as websockets' parser
does (`Frame.parse`): their state (context takeover) is the one websockets keeps, and
its errors fail the connection as the parser would (`fail_as_parser`). The caller hands
everything from the first other byte on to websockets, so every other protocol error,
refusal, control frame and fragmented message is websockets' as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import CloseCode, Frame, Opcode

try:  # websockets' C unmasking when built (websockets.frames imports it the same way)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without the C extension
    from websockets.utils import apply_mask

from .frames import FrameProtocol, Parked, at_boundary

_TEXT = 0x81  # FIN, RSV1-3 clear, opcode TEXT
_BINARY = 0x82  # FIN, RSV1-3 clear, opcode BINARY
_PONG = 0x8A  # FIN, RSV1-3 clear, opcode PONG
_DEFLATED_TEXT = 0xC1  # FIN, RSV1 (permessage-deflate: compressed), opcode TEXT
_DEFLATED_BINARY = 0xC2  # FIN, RSV1, opcode BINARY
TEXT, BINARY, PONG = 1, 2, 10  # the opcodes `split_frames` hands over
DEFLATED = 0x40  # or-ed into TEXT or BINARY: RSV1 was set (compressed, see `inflate`)
_CONTROL_MAX = 125  # a control frame's payload limit (RFC 6455 §5.5)
NO_LIMIT = 1 << 63  # a 64-bit length field cannot go over it (RFC 6455 §5.2)


def fast_limit(live: FrameProtocol | None, parked: Parked | None) -> int:
    """The largest payload `split_frames` may take now, or -1 when it may take none.

    -1 when the live protocol is not at a frame boundary with nothing in progress
    (`frames.at_boundary`), or when the connection has an extension other than
    websockets' `PerMessageDeflate` (whose handling of each frame `inflate` relies on)
    or one in the middle of a compressed message. Otherwise the limit websockets
    applies to a frame's header there, and to what `inflate` may make of it: the
    smaller of ``max_message_size`` and ``max_fragment_size``.
    """
    params: FrameProtocol | Parked | None = live if live is not None else parked
    if params is None or (live is not None and not at_boundary(live)):
        return -1
    for extension in params.extensions:
        if type(extension) is not PerMessageDeflate or extension.decode_cont_data:
            return -1
    limit = NO_LIMIT
    if params.max_message_size is not None:
        limit = params.max_message_size
    if params.max_fragment_size is not None:
        limit = min(limit, params.max_fragment_size)
    return limit


def split_frames(data: bytes | bytearray, limit: int, max_frames: int, max_bytes: int,
                 deflate: bool = False) -> tuple[int, list[tuple[bytes, int]]]:
    """The leading run of whole single-frame messages (and PONGs) in `data`, unmasked.

    Returns ``(end, frames)``: ``data[:end]`` is exactly the frames taken, each as
    ``(payload, opcode)`` with opcode `TEXT`, `BINARY` or `PONG`, or with `deflate`
    also ``TEXT | DEFLATED`` or ``BINARY | DEFLATED`` (RSV1 set: the payload is still
    compressed, for `inflate`). A frame is taken when its first byte is FIN + TEXT,
    FIN + BINARY or FIN + PONG with RSV1-3 clear (or, with `deflate`, FIN + RSV1 +
    TEXT or BINARY), it is masked, its payload length is at most `limit` (at most 125
    for a PONG: websockets fails a longer control frame) and it ends within `data` and
    within the first `max_bytes` bytes. PONGs are taken because a client's keepalive
    answer often shares a read with its next message, which would otherwise wake
    websockets' parser; at most `max_frames` are taken. The run stops at the first frame
    that is not so, which is left (with everything after it) for websockets' parser.
    UTF-8 is not checked here: the caller decodes text the way it decodes websockets'
    frames.
    """
    messages: list[tuple[bytes, int]] = []
    size = min(len(data), max_bytes)
    pos = 0
    with memoryview(data) as view:  # released on return: the caller may resize `data`
        while len(messages) < max_frames and pos + 6 <= size:
            head = data[pos]
            if head != _TEXT and head != _BINARY and head != _PONG and (
                    not deflate or (head != _DEFLATED_TEXT and head != _DEFLATED_BINARY)):
                break
            length = data[pos + 1] ^ 0x80  # the mask bit, which a client's frame must set
            if length < 126:
                start = pos + 6
            elif length == 126:
                start = pos + 8
                length = int.from_bytes(data[pos + 2:pos + 4], "big")
            elif length == 127:
                start = pos + 14
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
            else:  # unmasked: websockets fails the connection (1002)
                break
            end = start + length
            if (length > limit or end > size
                    or (head == _PONG and (length > _CONTROL_MAX or start != pos + 6))):
                break
            messages.append((apply_mask(view[start:end], data[start - 4:start]), head & 0x4F))
            pos = end
    return pos, messages


def cut_short(data: bytes | bytearray, start: int, limit: int, max_bytes: int,
              deflate: bool = False) -> bool:
    """True when ``data[start:]`` is the beginning of one frame that `split_frames` would
    take (with the same `deflate`) once the rest of it came (the read ended inside it):
    the caller keeps it and puts the next bytes after it, so a stream cut anywhere stays
    on the fast path. The frame must fit in `max_bytes` from its start, so what is kept
    is under `max_bytes`.
    When its length is not known yet (a few header bytes) the answer is True: if the
    frame turns out not to be taken, websockets gets it from its first byte.
    """
    have = len(data) - start
    head = data[start] if have > 0 else 0
    if head != _TEXT and head != _BINARY and head != _PONG and (
            not deflate or (head != _DEFLATED_TEXT and head != _DEFLATED_BINARY)):
        return False
    if have < 2:
        return True
    length = data[start + 1] ^ 0x80
    if length < 126:
        header = 6
    elif length == 126:
        if have < 4:
            return True
        header, length = 8, int.from_bytes(data[start + 2:start + 4], "big")
    elif length == 127:
        if have < 10:
            return True
        header, length = 14, int.from_bytes(data[start + 2:start + 10], "big")
    else:  # unmasked
        return False
    if head == _PONG and (length > _CONTROL_MAX or header != 6):
        return False
    return length <= limit and have < header + length <= max_bytes


_OPCODES = {TEXT | DEFLATED: Opcode.TEXT, BINARY | DEFLATED: Opcode.BINARY}


def inflate(extensions: Sequence[Extension], payload: bytes, opcode: int,
            max_size: int | None) -> bytes:
    """The message of a compressed frame `split_frames` took (``TEXT | DEFLATED`` or
    ``BINARY | DEFLATED``), decoded as websockets' `Frame.parse` decodes it: by the
    connection's `extensions` in reverse order, each given `max_size` (the limit of
    `fast_limit`, None for none), then websockets' reserved-bit check. The extension
    objects keep their state (context takeover) exactly as after websockets' parse.

    Raises what `Frame.parse` would: `PayloadTooBig` when the message would inflate
    past `max_size` (it stops there: a deflate bomb costs at most the limit),
    `ProtocolError` for a corrupt deflate stream; `fail_as_parser` turns it into the
    close websockets' parser sends.
    """
    frame = Frame(_OPCODES[opcode], payload, True, True)
    for extension in reversed(extensions):
        frame = extension.decode(frame, max_size=max_size)
    frame.check()
    return bytes(frame.data)  # the decompressor's bytes (not copied)


def fail_as_parser(proto: FrameProtocol, exc: Exception) -> None:
    """Fail `proto` for `exc`, raised by `inflate`, as websockets' parser fails it for
    the same exception raised by the same decode (``Protocol.parse``'s handlers):
    `ProtocolError` -> 1002 and `PayloadTooBig` -> 1009 with the exception's text as
    reason, anything else -> 1011, logged; ``parser_exc`` is set and what follows is
    discarded (`Protocol.fail`)."""
    if isinstance(exc, ProtocolError):
        proto.fail(CloseCode.PROTOCOL_ERROR, str(exc))
    elif isinstance(exc, PayloadTooBig):
        exc.set_current_size(proto.current_size)
        proto.fail(CloseCode.MESSAGE_TOO_BIG, str(exc))
    else:
        proto.logger.error("parser failed", exc_info=exc)
        proto.fail(CloseCode.INTERNAL_ERROR)  # details may be sensitive (as websockets)
    proto.parser_exc = exc
