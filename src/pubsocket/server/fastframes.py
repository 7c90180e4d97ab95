"""The inbound fast path: whole single-frame messages split without websockets' parser.

A publication arrives as one masked TEXT (or BINARY) frame with FIN set: for that one
shape websockets' generator-based parser (`Protocol.receive_data` / `events_received`)
costs ~2.4 µs per frame on an idle box; splitting the header here and unmasking with
websockets' own C `apply_mask` (``websockets.speedups``) costs ~0.4-0.7 µs (docs/design.md
"Cost model: one delivery"). `split_frames` takes only frames that websockets would hand
over as one whole ``Frame`` and nothing else: no extension (so RSV1-3 must be clear), at
a frame boundary of websockets' parser, payload within the size limit it would apply
there. The caller hands everything from the first other byte on to websockets, so every
protocol error, refusal, control frame and fragmented message is websockets' as before.
"""

from __future__ import annotations

try:  # websockets' C unmasking when built (websockets.frames imports it the same way)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without the C extension
    from websockets.utils import apply_mask

from .frames import FrameProtocol, Parked, at_boundary

_TEXT = 0x81  # FIN, RSV1-3 clear, opcode TEXT
_BINARY = 0x82  # FIN, RSV1-3 clear, opcode BINARY
_PONG = 0x8A  # FIN, RSV1-3 clear, opcode PONG
TEXT, BINARY, PONG = 1, 2, 10  # the opcodes `split_frames` hands over
_CONTROL_MAX = 125  # a control frame's payload limit (RFC 6455 §5.5)
_NO_LIMIT = 1 << 63  # a 64-bit length field cannot go over it (RFC 6455 §5.2)


def fast_limit(live: FrameProtocol | None, parked: Parked | None) -> int:
    """The largest payload `split_frames` may take now, or -1 when it may take none.

    None when the connection has an extension (permessage-deflate: its frames always
    go to websockets) or when its live protocol is not at a frame boundary with nothing
    in progress (`frames.at_boundary`). Otherwise the limit websockets applies to a
    frame's header there: the smaller of ``max_message_size`` and ``max_fragment_size``.
    """
    params: FrameProtocol | Parked | None = live if live is not None else parked
    if params is None or params.extensions or (live is not None and not at_boundary(live)):
        return -1
    limit = _NO_LIMIT
    if params.max_message_size is not None:
        limit = params.max_message_size
    if params.max_fragment_size is not None:
        limit = min(limit, params.max_fragment_size)
    return limit


def split_frames(data: bytes | bytearray, limit: int, max_frames: int, max_bytes: int
                 ) -> tuple[int, list[tuple[bytes, int]]]:
    """The leading run of whole single-frame messages (and PONGs) in `data`, unmasked.

    Returns ``(end, frames)``: ``data[:end]`` is exactly the frames taken, each as
    ``(payload, opcode)`` with opcode `TEXT`, `BINARY` or `PONG`. A frame is taken when
    its first byte is FIN + TEXT, FIN + BINARY or FIN + PONG with RSV1-3 clear, it is
    masked, its payload length is at most `limit` (at most 125 for a PONG: websockets
    fails a longer control frame) and it ends within `data` and within the first
    `max_bytes` bytes. PONGs are taken because a client's keepalive answer often shares
    a read with its next message, which would otherwise wake websockets' parser; at most
    `max_frames` are taken. The run stops at the first frame that is not so, which is
    left (with everything after it) for websockets' parser. UTF-8 is not checked here:
    the caller decodes text the way it decodes websockets' frames.
    """
    messages: list[tuple[bytes, int]] = []
    size = min(len(data), max_bytes)
    pos = 0
    with memoryview(data) as view:  # released on return: the caller may resize `data`
        while len(messages) < max_frames and pos + 6 <= size:
            head = data[pos]
            if head != _TEXT and head != _BINARY and head != _PONG:
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
            messages.append((apply_mask(view[start:end], data[start - 4:start]), head & 0x0F))
            pos = end
    return pos, messages


def cut_short(data: bytes | bytearray, start: int, limit: int, max_bytes: int) -> bool:
    """True when ``data[start:]`` is the beginning of one frame that `split_frames` would
    take once the rest of it came (the read ended inside it): the caller keeps it and
    puts the next bytes after it, so a stream cut anywhere stays on the fast path. The
    frame must fit in `max_bytes` from its start, so what is kept is under `max_bytes`.
    When its length is not known yet (a few header bytes) the answer is True: if the
    frame turns out not to be taken, websockets gets it from its first byte.
    """
    have = len(data) - start
    head = data[start] if have > 0 else 0
    if head != _TEXT and head != _BINARY and head != _PONG:
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
