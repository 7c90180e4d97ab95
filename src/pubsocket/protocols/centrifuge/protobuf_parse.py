"""Reading Centrifuge protocol v2 Protobuf commands into the shared command types.

A binary frame holds one or more ``Command`` messages, each prefixed with its length as
a varint (protobuf's length-delimited stream, what centrifuge's
``ProtobufCommandDecoder`` reads and the SDKs write). A zero-length command (every field
at its default) is the answer to a server ping and yields nothing.

Each command is turned into the dict the JSON parser reads (`centrifuge_parse._build`),
so both variants share one set of rules, limits and error codes. A ``data`` field is
JSON bytes (the SDKs' protobuf build sends bytes; pubsocket keeps every payload as
JSON): data that is not JSON is refused with a `DataNotJSON` error reply (107, the
connection stays), never delivered. Malformed framing or protobuf closes the connection
(3501) like malformed JSON does.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from google.protobuf.message import DecodeError

from ...codecs.base import Parsed
from ...errors import ErrorCode, ProtocolViolation
from ...protocol import CmdId, Command, valid_id
from ._pb import pubsocket_centrifuge_pb2 as pb
from .parse import _build

MAX_VARINT_BYTES: Final = 5  # lengths below 2^35: beyond any frame the server takes
COUNT_WALK: Final = 1024  # commands `count_commands` walks before it answers len(data)
_METHODS: Final = ("connect", "subscribe", "unsubscribe", "publish", "presence",
                   "presence_stats", "history", "refresh", "sub_refresh", "rpc", "send")


class DataNotJSON(ProtocolViolation):
    """A command's ``data`` bytes are not JSON: an error reply (107), not a close."""


def varint(value: int) -> bytes:
    """`value` (>= 0) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; (-1, pos) when it is cut short or
    longer than `MAX_VARINT_BYTES`."""
    value = shift = 0
    for i in range(pos, min(pos + MAX_VARINT_BYTES, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    return -1, pos


def count_commands(data: bytes) -> int:
    """An upper bound on the commands in `data`, without parsing any: the length prefixes
    are walked (at most `COUNT_WALK` of them; past that every byte could start a
    command, so ``len(data)`` is the bound). A bad prefix ends the walk: parsing stops
    there too."""
    pos = count = 0
    end = len(data)
    while pos < end:
        count += 1
        if count > COUNT_WALK:
            return end
        length, pos = read_varint(data, pos)
        if length < 0:
            return count
        pos += length
    return count


def parse_commands(data: bytes) -> list[Parsed]:
    """The commands of one binary frame in order; a malformed one ends the list as the
    `ProtocolViolation` its close (or, for `DataNotJSON`, its error reply) is made of."""
    out: list[Parsed] = []
    pos, end = 0, len(data)
    while pos < end:
        length, start = read_varint(data, pos)
        if length < 0 or start + length > end:
            out.append(ProtocolViolation(ErrorCode.BAD_JSON, "bad command length"))
            break
        pos = start + length
        try:
            cmd = parse_command(data[start:pos])
        except ProtocolViolation as exc:
            out.append(exc)
            if not isinstance(exc, DataNotJSON):
                break  # the connection closes: nothing after it runs
            continue
        if cmd is not None:
            out.append(cmd)
    return out


def parse_command(raw: bytes) -> Command | None:
    """One ``Command`` message; None for the empty command (a pong). Raises
    `ProtocolViolation` with a fixed message (never the client's input)."""
    try:
        msg = pb.Command.FromString(raw)
    except (DecodeError, RecursionError):
        raise ProtocolViolation(ErrorCode.BAD_JSON, "command is not valid protobuf") from None
    cmd_id: CmdId | None = msg.id or None
    if cmd_id is not None and not valid_id(cmd_id):
        raise ProtocolViolation(ErrorCode.BAD_ID, "id must be a positive integer")
    methods = [m for m in _METHODS if msg.HasField(m)]
    if not methods:
        if cmd_id is None:
            return None  # the empty command (or a ping request): an answer to a ping
        raise ProtocolViolation(ErrorCode.BAD_ACTION, "unknown command", cmd_id)
    if len(methods) > 1:
        raise ProtocolViolation(ErrorCode.BAD_ACTION, "one method per command", cmd_id)
    method = methods[0]
    return _build(method, _body(method, getattr(msg, method), cmd_id), cmd_id)


def _body(method: str, req: Any, cmd_id: CmdId | None) -> dict[str, Any]:
    """The request as the JSON variant's body dict (what `_build` validates)."""
    if method == "connect":
        body: dict[str, Any] = {"token": req.token, "name": req.name,
                                "version": req.version}
        if req.data:
            body["data"] = _json(req.data, cmd_id)
        if req.subs:
            body["subs"] = {ch: {"recover": s.recover, "offset": s.offset, "epoch": s.epoch}
                            for ch, s in req.subs.items()}
        return body
    if method == "refresh":
        return {"token": req.token}
    if method == "rpc":
        return {"method": req.method, "data": _json(req.data, cmd_id) if req.data else None}
    if method == "send":
        return {}
    body = {"channel": req.channel}
    if method == "subscribe":
        body.update(token=req.token, recover=req.recover, epoch=req.epoch, offset=req.offset,
                    flag=req.flag, type=req.type)
    elif method == "publish":
        if req.data:  # empty bytes are no data: protobuf cannot tell them from none
            value = _json(req.data, cmd_id)  # JSON, else a 107 reply
            # Kept as sent, not re-encoded: a Protobuf subscriber gets the publisher's
            # bytes (as from Centrifugo); JSON subscribers the same JSON text. A line
            # break (only ever whitespace in JSON) would split the JSON wire's
            # newline-delimited frames and SSE events: then it is re-encoded.
            raw = req.data
            body["data"] = value if b"\n" in raw or b"\r" in raw else orjson.Fragment(raw)
    elif method == "sub_refresh":
        body["token"] = req.token
    elif method == "history":
        body.update(limit=req.limit, reverse=req.reverse)
        if req.HasField("since"):
            body["since"] = {"offset": req.since.offset, "epoch": req.since.epoch}
    return body


def _json(data: bytes, cmd_id: CmdId | None) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise DataNotJSON(ErrorCode.BAD_JSON, "data is not JSON", cmd_id) from None
