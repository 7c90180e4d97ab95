"""The Centrifuge Protobuf codec without a socket: every reply and push says what the JSON
codec's says (same fields, codes, values), and commands parse to what the JSON parser
makes of the same command."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from pubsocket.brokers.base import HistoryPage, Position, Publication, Publisher
from pubsocket.errors import ProtocolViolation
from pubsocket.presence.base import ClientInfo, Stats
from pubsocket.protocol import (
    ErrorCode,
    History,
    Presence,
    Publish,
    Refresh,
    SubRefresh,
    Subscribe,
    SubscribeResult,
    Unsubscribe,
)
from pubsocket.protocols.centrifuge import CENTRIFUGE
from pubsocket.protocols.centrifuge.parse import parse_frame
from pubsocket.protocols.centrifuge.protobuf_codec import CENTRIFUGE_PROTOBUF, PING
from pubsocket.protocols.centrifuge.protobuf_parse import (
    DataNotJSON,
    parse_commands,
    read_varint,
    varint,
)

from pubsocket.protocols.centrifuge._pb import pubsocket_centrifuge_pb2 as pb  # isort: skip

ALICE = Publisher("c1", "alice", b'{"name":"Alice"}')
P1 = Publication(1, "ep", b'{"a":1}', ALICE)
P2 = Publication(2, "ep", b"[2]")
BYTES_FIELDS = {"data", "conn_info"}
UINT64_FIELDS = {"offset"}


def as_json(reply: bytes) -> Any:
    """One length-prefixed Reply as the JSON codec would have written it: bytes fields
    (JSON bytes) parsed, uint64 offsets as numbers (protobuf's JSON mapping quotes them)."""
    length, pos = read_varint(reply, 0)
    assert pos + length == len(reply)
    msg = pb.Reply.FromString(reply[pos:])
    return _normal(MessageToDict(msg, preserving_proto_field_name=True))


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in BYTES_FIELDS:
                out[key] = json.loads(base64.b64decode(item))
            elif key in UINT64_FIELDS:
                out[key] = int(item)
            else:
                out[key] = _normal(item)
        return out
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def without_defaults(value: Any) -> Any:
    """JSON minus the fields proto3 cannot carry: "", 0 and false (the SDKs read a
    missing field as that default)."""
    if isinstance(value, dict):
        return {k: without_defaults(v) for k, v in value.items()
                if not (v in ("", 0) and not isinstance(v, dict | list))}
    if isinstance(value, list):
        return [without_defaults(v) for v in value]
    return value


SUB = Subscribe("chat", 3, Position(0, "ep"))
CASES: dict[str, Callable[[Any], bytes | None]] = {
    "publication": lambda c: c.publication("chat", P1),
    "publication without info or offset": lambda c: c.publication("t", Publication(
        0, "", b'"x"')),
    "subscribed": lambda c: c.subscribed(Subscribe("chat", 2), SubscribeResult(
        Position(5, "ep"))),
    "subscribed, recovering with replay": lambda c: c.subscribed(SUB, SubscribeResult(
        Position(2, "ep"), True, (P1, P2))),
    "subscribed, expiring token": lambda c: c.subscribed(Subscribe(
        "t", 2, expires_at=time.time() + 100), SubscribeResult(Position(0, ""))),
    "unsubscribe": lambda c: c.done(Unsubscribe("chat", 4)),
    "published": lambda c: c.published(Publish("chat", b"1", 5), P1),
    "history": lambda c: c.history(History("chat", 6, None, 10), HistoryPage(
        [P1, P2], Position(2, "ep"))),
    "history reversed": lambda c: c.history(History("chat", 6, None, 10, True),
                                            HistoryPage([P1, P2], Position(2, "ep"))),
    "error": lambda c: c.error(ErrorCode.FORBIDDEN, "no", 7),
    "temporary error": lambda c: c.error(ErrorCode.BROKER_UNAVAILABLE, "down", 7),
    "error without id": lambda c: c.error_code(107, None),
    "gap": lambda c: c.gap("chat", Position(3, "ep")),
    "connected": lambda c: c.connected(1, "cid", "pubsocket", time.time() + 60, 25),
    "connected, no ping": lambda c: c.connected(1, "cid", "pubsocket", None, 0),
    "refreshed": lambda c: c.refreshed(Refresh("t", 8), time.time() + 30),
    "sub_refreshed": lambda c: c.sub_refreshed(SubRefresh("chat", "t", 9), None),
    "rpc": lambda c: c.rpc_result(10, b'{"sum":3}'),
    "unsubscribed": lambda c: c.unsubscribed("chat", "expired"),
    "presence": lambda c: c.presence(Presence("chat", 11), {
        "c1": ClientInfo("c1", "alice", {"n": 1}), "c2": ClientInfo("c2", None)}),
    "presence_stats": lambda c: c.presence_stats(Presence("chat", 12, stats=True),
                                                 Stats(3, 2)),
    "join": lambda c: c.join("chat", ClientInfo("c1", "alice", {"n": 1})),
    "leave": lambda c: c.leave("chat", ClientInfo("c2", None)),
}


@pytest.mark.parametrize("case", CASES)
def test_every_reply_says_what_the_json_codec_says(case: str) -> None:
    encode = CASES[case]
    want, got = encode(CENTRIFUGE), encode(CENTRIFUGE_PROTOBUF)
    assert want is not None and got is not None
    assert as_json(got) == without_defaults(json.loads(want))


def test_no_id_no_reply_and_the_ping() -> None:
    assert CENTRIFUGE_PROTOBUF.done(Unsubscribe("chat")) is None
    assert CENTRIFUGE_PROTOBUF.presence(Presence("chat"), {}) is None
    assert varint(len(pb.Reply().SerializeToString())) == PING  # the empty Reply


def _frame(*cmds: Any) -> bytes:
    return b"".join(varint(len(b)) + b for b in (c.SerializeToString() for c in cmds))


def test_commands_parse_as_their_json_twins() -> None:
    binary = _frame(
        pb.Command(id=1, connect=pb.ConnectRequest(token="t", data=b'{"a": 1}', name="js")),
        pb.Command(),  # a pong
        pb.Command(id=2, subscribe=pb.SubscribeRequest(channel="c", recover=True,
                                                       offset=7, epoch="e", token="st")),
        pb.Command(id=3, publish=pb.PublishRequest(channel="c", data=b'[1,"x"]')),
        pb.Command(id=4, rpc=pb.RPCRequest(method="m")),
        pb.Command(id=5, history=pb.HistoryRequest(channel="c", limit=-1, reverse=True,
                                                   since=pb.StreamPosition(offset=2,
                                                                           epoch="e"))),
        pb.Command(id=6, presence_stats=pb.PresenceStatsRequest(channel="c")),
    )
    text = "\n".join(json.dumps(c) for c in [
        {"id": 1, "connect": {"token": "t", "data": {"a": 1}, "name": "js"}},
        {},
        {"id": 2, "subscribe": {"channel": "c", "recover": True, "offset": 7, "epoch": "e",
                                "token": "st"}},
        {"id": 3, "publish": {"channel": "c", "data": [1, "x"]}},
        {"id": 4, "rpc": {"method": "m"}},
        {"id": 5, "history": {"channel": "c", "limit": -1, "reverse": True,
                              "since": {"offset": 2, "epoch": "e"}}},
        {"id": 6, "presence_stats": {"channel": "c"}},
    ])
    assert parse_commands(binary) == parse_frame(text)
    # a publish's bytes are kept as sent (a Protobuf subscriber gets them back)
    spaced = pb.Command(id=7, publish=pb.PublishRequest(channel="c", data=b' [1, "x"] '))
    assert parse_commands(_frame(spaced))[0].payload == b' [1, "x"] '  # type: ignore[union-attr]
    # ... but for line breaks, which the JSON wire (newline-delimited) cannot carry raw
    lines = pb.Command(id=8, publish=pb.PublishRequest(channel="c", data=b'[1,\r\n"x"]'))
    assert parse_commands(_frame(lines))[0].payload == b'[1,"x"]'  # type: ignore[union-attr]


def test_data_that_is_not_json_is_an_error_reply_not_a_close() -> None:
    bad = pb.Command(id=3, publish=pb.PublishRequest(channel="c", data=b"\xff"))
    good = pb.Command(id=4, publish=pb.PublishRequest(channel="c", data=b"1"))
    first, second = parse_commands(_frame(bad, good))
    assert isinstance(first, DataNotJSON) and first.cmd_id == 3
    assert CENTRIFUGE_PROTOBUF.violation_close(first) is None  # the connection stays
    assert as_json(CENTRIFUGE_PROTOBUF.error(first.code, first.message, first.cmd_id)) == {
        "id": 3, "error": {"code": 107, "message": "bad request"}}
    assert second == Publish("c", b"1", 4)


@pytest.mark.parametrize(("frame", "code"), [
    (_frame(pb.Command(id=1, publish=pb.PublishRequest(channel="c"))),
     ErrorCode.MISSING_DATA),
    (_frame(pb.Command(id=1, publish=pb.PublishRequest(channel="bad channel!", data=b"1"))),
     ErrorCode.INVALID_TOPIC),
    (_frame(pb.Command(id=1, subscribe=pb.SubscribeRequest(channel="c"),
                       publish=pb.PublishRequest(channel="c", data=b"1"))),
     ErrorCode.BAD_ACTION),
    (_frame(pb.Command(id=1, send=pb.SendRequest(data=b"1"))), ErrorCode.BAD_ACTION),
    (_frame(pb.Command(id=1)), ErrorCode.BAD_ACTION),
    (b"\x03\x08", ErrorCode.BAD_JSON),  # the length runs past the frame
    (b"\x02\xff\xff", ErrorCode.BAD_JSON),  # not a Command
])
def test_malformed_commands_are_the_json_parsers_violations(frame: bytes,
                                                            code: ErrorCode) -> None:
    (got,) = parse_commands(frame)
    assert isinstance(got, ProtocolViolation) and not isinstance(got, DataNotJSON)
    assert got.code == code
