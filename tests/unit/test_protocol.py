"""The wire protocol with no I/O: command parsing, topics, encoders and server frames."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from pubsocket.brokers import Publication
from pubsocket.codecs import V1
from pubsocket.codecs.json_commands import parse_json_command
from pubsocket.codecs.plain import encode_error
from pubsocket.errors import ProtocolViolation
from pubsocket.framing import frame_payload, text_frame
from pubsocket.protocol import (
    VALID_TOPICS,
    Command,
    ErrorCode,
    Publish,
    Subscribe,
    Unsubscribe,
    valid_id,
    valid_topic,
)


def parse_command(text: str | bytes) -> Command:
    """The seed protocol's parse (plain mode); pubsocket.v1 extensions: test_codecs.py."""
    return parse_json_command(text, extended=False)


def violation(text: str | bytes) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        parse_command(text)
    return info.value


def cmd(**fields: Any) -> str:
    return json.dumps(fields)


# -- parse_command: good commands ----------------------------------------------------------


def test_subscribe_and_unsubscribe() -> None:
    assert parse_command(cmd(action="subscribe", topic="chat")) == Subscribe("chat")
    assert parse_command(cmd(action="unsubscribe", topic="chat", id="u1")) == Unsubscribe(
        "chat", "u1")


def test_subscribe_ignores_data() -> None:
    assert parse_command(cmd(action="subscribe", topic="t", data=[1])) == Subscribe("t")


def test_publish_payload_is_json_of_data() -> None:
    c = parse_command(cmd(action="publish", topic="t", data={"x": [1, "é", None]}, id=5))
    assert isinstance(c, Publish)
    assert c.topic == "t"
    assert c.id == 5
    assert c.payload is not None
    assert orjson.loads(c.payload) == {"x": [1, "é", None]}


@pytest.mark.parametrize("data", [None, False, 0, "", [], {}])
def test_publish_falsy_data_is_still_data(data: Any) -> None:
    c = parse_command(cmd(action="publish", topic="t", data=data))
    assert isinstance(c, Publish)
    assert orjson.loads(c.payload) == data


def test_bytes_input_is_accepted() -> None:
    assert parse_command(b'{"action":"subscribe","topic":"t"}').topic == "t"


@pytest.mark.parametrize("cmd_id", ["", "x" * 64, 0, -1, 2**53 - 1, -(2**53) + 1])
def test_valid_ids(cmd_id: str | int) -> None:
    assert valid_id(cmd_id)
    assert parse_command(cmd(action="subscribe", topic="t", id=cmd_id)).id == cmd_id


def test_null_id_is_no_id() -> None:
    assert parse_command(cmd(action="subscribe", topic="t", id=None)).id is None


# -- parse_command: every error code -----------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "not json", "{'a': 1}", b"\xff\xfe", "\ud800"])
def test_bad_json(text: str | bytes) -> None:
    v = violation(text)
    assert v.code == "bad_json"
    assert v.cmd_id is None


@pytest.mark.parametrize("text", ["[]", "1", '"subscribe"', "null", "true"])
def test_non_object_is_bad_json(text: str) -> None:
    assert violation(text).code == "bad_json"


@pytest.mark.parametrize(
    "action", [None, "", "SUBSCRIBE", "sub", "delete", 1, 1.0, True, ["publish"], {"a": 1}]
)
def test_bad_action(action: Any) -> None:
    fields: dict[str, Any] = {"topic": "t"}
    if action is not None:
        fields["action"] = action
    v = violation(json.dumps(fields))
    assert v.code == "bad_action"


@pytest.mark.parametrize("topic", [None, "", 5, ["t"], "a b", "x" * 256, "tópic", "a%b"])
def test_invalid_topic(topic: Any) -> None:
    fields: dict[str, Any] = {"action": "subscribe"}
    if topic is not None:
        fields["topic"] = topic
    assert violation(json.dumps(fields)).code == "invalid_topic"


def test_missing_data() -> None:
    assert violation(cmd(action="publish", topic="t")).code == "missing_data"


@pytest.mark.parametrize("cmd_id", ["x" * 65, 2**53, -(2**53), 1.5, True, False, [1], {"a": 1}])
def test_bad_id(cmd_id: Any) -> None:
    assert not valid_id(cmd_id)
    v = violation(cmd(action="subscribe", topic="t", id=cmd_id))
    assert v.code == "bad_id"
    assert v.cmd_id is None


def test_bad_id_is_checked_before_action() -> None:
    assert violation(cmd(action="nope", id="x" * 65)).code == "bad_id"


@pytest.mark.parametrize(("fields", "code"), [
    ({"action": "nope", "topic": "t", "id": "a1"}, "bad_action"),
    ({"action": "subscribe", "topic": "bad topic", "id": "a1"}, "invalid_topic"),
    ({"action": "publish", "topic": "t", "id": "a1"}, "missing_data"),
    ({"action": "publish", "topic": "t", "id": 77}, "missing_data"),
])
def test_valid_id_is_recovered_when_a_later_check_fails(fields: dict[str, Any],
                                                        code: str) -> None:
    v = violation(json.dumps(fields))
    assert v.code == code
    assert v.cmd_id == fields["id"]


def test_deeply_nested_data_is_a_protocol_violation_not_a_crash() -> None:
    # orjson parses up to 1024 levels but serializes only ~254: the gap must not escape
    # as a TypeError (a server-side traceback and a 1011) instead of a fixed error code
    for depth in (255, 500, 1000):
        text = '{"action":"publish","topic":"t","data":' + "[" * depth + "]" * depth + "}"
        with pytest.raises(ProtocolViolation):
            parse_command(text)


def test_errors_never_contain_the_input() -> None:
    marker = "ZZ_CLIENT_INPUT_ZZ"
    inputs = [
        marker,
        json.dumps([marker]),
        cmd(action=marker, topic="t"),
        cmd(action="subscribe", topic=marker + " !"),
        cmd(action="subscribe", topic="t", id=marker * 5),
        cmd(action="publish", topic="t", id=marker),
        cmd(action="publish", topic=marker * 20, data=marker),
    ]
    for text in inputs:
        v = violation(text)
        assert marker not in str(v)
        assert marker not in v.message
        assert marker not in encode_error(v.code, v.message, None).decode()


# -- topics -------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", [
    "a", "Z", "0", "chat", "x" * 255, "room_1", "a.b", "a:b", "user@host", "a/b/c", "a-b",
    "_.:@/-", "-", "/", "...", "ABCxyz0189", "#42", "personal:#alice", "news#42",
])
def test_valid_topics(topic: str) -> None:
    assert valid_topic(topic)
    assert parse_command(cmd(action="subscribe", topic=topic)).topic == topic


@pytest.mark.parametrize("topic", [
    "", "x" * 256, "a b", "a\tb", "a\nb", "chat\n", "\nchat", "a*", "a?", "a+b",
    "a,b", "a\\b", "a'b", 'a"b', "a%20", "é", "ä", "日本", "a\u00a0b", "\u0661",
    "\uff21", "a\x00", "\u212a",  # Kelvin sign, folds to k under IGNORECASE
])
def test_invalid_topics(topic: str) -> None:
    assert not valid_topic(topic)


@pytest.mark.parametrize("topic", [None, 1, b"chat", ["chat"], {"t": 1}])
def test_non_string_topics_are_invalid(topic: object) -> None:
    assert not valid_topic(topic)


def test_valid_topics_are_remembered_boundedly_and_only_when_valid() -> None:
    # The set a publish looks in before the regex (protocol.VALID_TOPICS): only topics
    # that passed, never more than its cap, and the verdicts stay the same.
    for k in range(3000):
        assert valid_topic(f"remembered-{k}")
        assert not valid_topic(f"not remembered {k}")
    assert len(VALID_TOPICS) <= 1024
    assert all(valid_topic(t) for t in VALID_TOPICS)
    assert "not remembered 2999" not in VALID_TOPICS
    assert parse_command(cmd(action="publish", topic="remembered-2999", data=1)).topic \
        == "remembered-2999"
    assert violation(cmd(action="publish", topic="not remembered 2999", data=1)).code \
        == "invalid_topic"


# -- encoders -----------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["t", "a/b:c@d.e-f_g", "x" * 255, "-", "@"])
@pytest.mark.parametrize("data", [{"a": 1}, [1, 2], "s\"q\\", None, 1.5, True])
def test_v1_delivery_envelope_is_json(topic: str, data: Any) -> None:
    out = V1.publication(topic, Publication(0, "", orjson.dumps(data)))
    assert json.loads(out) == {"type": "message", "topic": topic, "data": data}
    out = V1.publication(topic, Publication(9, "e", orjson.dumps(data)))
    assert json.loads(out) == {"type": "message", "topic": topic, "offset": 9, "data": data}


def test_v1_ack_of_a_command_with_an_id() -> None:
    assert json.loads(V1.done(Unsubscribe("t", "a1")) or b"") == {"type": "ack", "id": "a1"}
    assert json.loads(V1.done(Unsubscribe("t", 7)) or b"") == {"type": "ack", "id": 7}
    assert V1.done(Unsubscribe("t")) is None


def test_encode_error() -> None:
    assert json.loads(encode_error(ErrorCode.BAD_JSON, "msg", None)) == {
        "type": "error", "code": "bad_json", "message": "msg"}
    assert json.loads(encode_error(ErrorCode.BAD_ACTION, "m", "x")) == {
        "type": "error", "code": "bad_action", "message": "m", "id": "x"}
    assert json.loads(encode_error(ErrorCode.BAD_ACTION, "m", 0))["id"] == 0


def test_error_codes_are_the_documented_strings() -> None:
    """Every code a client can receive has a row in docs/protocol.md's error table."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    table = doc.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert {c.value for c in ErrorCode} == documented
    # the client's own mistakes count toward the protocol-error limit; the server's don't
    assert not ErrorCode.BROKER_UNAVAILABLE.counts
    for code in (ErrorCode.BAD_JSON, ErrorCode.BAD_ACTION, ErrorCode.INVALID_TOPIC,
                 ErrorCode.MISSING_DATA, ErrorCode.BAD_ID, ErrorCode.BAD_FIELD,
                 ErrorCode.SUBSCRIPTION_LIMIT):
        assert code.counts, code


# -- frames -------------------------------------------------------------------------------


def parse_with_websockets(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None, extensions=[])
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame: Frame = done.value.value
    with pytest.raises(StopIteration) as eof:
        next(reader.at_eof())
    assert eof.value.value is True, "text_frame produced trailing bytes"
    return frame


SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("size", SIZES)
def test_text_frame_parses_with_websockets(size: int) -> None:
    payload = bytes(ord("a") + i % 26 for i in range(size))
    frame = parse_with_websockets(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data == payload


@pytest.mark.parametrize("size", SIZES)
def test_frame_payload_round_trip(size: int) -> None:
    payload = bytes((i * 7) % 256 for i in range(size))
    framed = text_frame(payload)
    assert frame_payload(framed) == payload
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(framed) == header + size
