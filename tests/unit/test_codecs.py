"""The codecs with no I/O: parsing of every command shape, and each encoder's exact bytes."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from pubsocket.brokers import HistoryPage, Position, Publication
from pubsocket.brokers.base import Publisher
from pubsocket.codecs import PLAIN, V1, Codec
from pubsocket.codecs.json_commands import parse_json_command
from pubsocket.errors import ProtocolViolation
from pubsocket.protocol import (
    MAX_HISTORY_LIMIT,
    ErrorCode,
    History,
    Publish,
    Subscribe,
    SubscribeResult,
    Unsubscribe,
)


def cmd(**fields: Any) -> str:
    return json.dumps(fields)


def v1(**fields: Any) -> Any:
    return parse_json_command(cmd(**fields), extended=True)


def plain(**fields: Any) -> Any:
    return parse_json_command(cmd(**fields), extended=False)


def v1_violation(**fields: Any) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        v1(**fields)
    return info.value


# -- parsing: the v1 extensions ------------------------------------------------------------


def test_v1_subscribe_with_and_without_since() -> None:
    assert v1(action="subscribe", topic="t") == Subscribe("t")
    assert v1(action="subscribe", topic="t", id="s", since=None) == Subscribe("t", "s")
    assert v1(action="subscribe", topic="t", id=3, since={"offset": 7, "epoch": "ab12"}) == \
        Subscribe("t", 3, Position(7, "ab12"))


@pytest.mark.parametrize("since", [
    {"offset": 0, "epoch": ""},
    {"offset": 2**53 - 1, "epoch": "e" * 64},
    {"offset": 5, "epoch": "x", "extra": "ignored"},
])
def test_v1_since_edges_that_are_valid(since: dict[str, Any]) -> None:
    parsed = v1(action="subscribe", topic="t", since=since)
    assert parsed.since == Position(since["offset"], since["epoch"])


@pytest.mark.parametrize("since", [
    5, "5", [5, "e"], True, {}, {"offset": 5}, {"epoch": "e"},
    {"offset": -1, "epoch": "e"}, {"offset": 2**53, "epoch": "e"},
    {"offset": 1.0, "epoch": "e"}, {"offset": "1", "epoch": "e"},
    {"offset": True, "epoch": "e"}, {"offset": None, "epoch": "e"},
    {"offset": 1, "epoch": 5}, {"offset": 1, "epoch": None}, {"offset": 1, "epoch": ["e"]},
    {"offset": 1, "epoch": "e" * 65},
])
@pytest.mark.parametrize("action", ["subscribe", "history"])
def test_v1_bad_since_is_bad_field_with_the_id(since: Any, action: str) -> None:
    v = v1_violation(action=action, topic="t", id="q1", since=since)
    assert v.code is ErrorCode.BAD_FIELD
    assert v.cmd_id == "q1"
    assert "since" in v.message


def test_v1_since_is_checked_after_the_topic() -> None:
    v = v1_violation(action="subscribe", topic="bad topic", since=5)
    assert v.code is ErrorCode.INVALID_TOPIC


def test_v1_since_is_ignored_on_unsubscribe_and_publish() -> None:
    assert v1(action="unsubscribe", topic="t", since="junk") == Unsubscribe("t")
    assert v1(action="publish", topic="t", data=1, since="junk") == Publish("t", b"1")


def test_v1_history_defaults() -> None:
    assert v1(action="history", topic="t") == History("t", None, None, MAX_HISTORY_LIMIT)
    assert MAX_HISTORY_LIMIT == 1000
    assert v1(action="history", topic="t", id="h", limit=3,
              since={"offset": 2, "epoch": "e"}) == History("t", "h", Position(2, "e"), 3)


@pytest.mark.parametrize("limit", [0, 1, 999, 1000])
def test_v1_history_limit_bounds_that_are_valid(limit: int) -> None:
    assert v1(action="history", topic="t", limit=limit).limit == limit


@pytest.mark.parametrize("limit", [-1, 1001, 2**53, 1.0, 2.5, "10", True, False, None, [1],
                                   {"n": 1}])
def test_v1_history_limit_out_of_bounds_is_bad_field(limit: Any) -> None:
    v = v1_violation(action="history", topic="t", id=9, limit=limit)
    assert v.code is ErrorCode.BAD_FIELD
    assert v.cmd_id == 9
    assert "limit" in v.message


def test_v1_history_needs_a_valid_topic() -> None:
    assert v1_violation(action="history", id="h").code is ErrorCode.INVALID_TOPIC
    assert v1_violation(action="history", topic="a b", id="h").cmd_id == "h"


def test_v1_bad_action_names_history() -> None:
    v = v1_violation(action="replay", topic="t", id="x")
    assert v.code is ErrorCode.BAD_ACTION
    assert "history" in v.message
    assert v.cmd_id == "x"


# -- parsing: plain mode is the seed protocol ----------------------------------------------


def test_plain_rejects_history_with_bad_action_and_keeps_the_id() -> None:
    with pytest.raises(ProtocolViolation) as info:
        plain(action="history", topic="t", id="h1", limit=5)
    assert info.value.code is ErrorCode.BAD_ACTION
    assert info.value.cmd_id == "h1"
    assert "history" not in info.value.message


@pytest.mark.parametrize("since", [{"offset": 3, "epoch": "e"}, "junk", -1, {"offset": -5}])
def test_plain_ignores_since_valid_or_not(since: Any) -> None:
    assert plain(action="subscribe", topic="t", id="s", since=since) == Subscribe("t", "s")


@pytest.mark.parametrize("codec", [PLAIN, V1])
def test_codec_parse_returns_the_violation_in_sequence(codec: Codec) -> None:
    (ok,) = codec.parse(cmd(action="subscribe", topic="t"))
    assert ok == Subscribe("t")
    (bad,) = codec.parse("{")
    assert isinstance(bad, ProtocolViolation)
    assert bad.code is ErrorCode.BAD_JSON


def test_codec_parse_of_history_per_codec() -> None:
    text = cmd(action="history", topic="t", id=1)
    (plain_result,) = PLAIN.parse(text)
    assert isinstance(plain_result, ProtocolViolation)
    assert plain_result.code is ErrorCode.BAD_ACTION
    assert V1.parse(text) == (History("t", 1),)


def test_codec_names() -> None:
    assert PLAIN.name == "plain"
    assert V1.name == "pubsocket.v1"


# -- encoders: plain ----------------------------------------------------------------------

PUB = Publication(4, "ep", b'{"a":[1,"\xc3\xa9"]}')
PAGE = HistoryPage([Publication(4, "ep", b"1"), Publication(5, "ep", b'{"k":null}')],
                   Position(5, "ep"))


def test_plain_delivery_is_the_payload_itself() -> None:
    assert PLAIN.publication("t", PUB) == PUB.payload
    assert PLAIN.publication("t", Publication(0, "", b"[]")) == b"[]"


def test_plain_sends_no_acks_no_history_no_gaps() -> None:
    assert PLAIN.subscribed(Subscribe("t", "s", Position(1, "ep")),
                            SubscribeResult(Position(1, "ep"), True)) is None
    assert PLAIN.done(Unsubscribe("t", "u")) is None
    assert PLAIN.published(Publish("t", b"1", "p"), PUB) is None
    assert PLAIN.gap("t", Position(3, "ep")) is None
    assert PLAIN.history(History("t", "h"), PAGE) is None


@pytest.mark.parametrize("codec", [PLAIN, V1])
def test_error_bytes(codec: Codec) -> None:
    assert codec.error(ErrorCode.BAD_FIELD, "m", None) == \
        b'{"type":"error","code":"bad_field","message":"m"}'
    assert codec.error(ErrorCode.UNRECOVERABLE_POSITION, "m", "i") == \
        b'{"type":"error","code":"unrecoverable_position","message":"m","id":"i"}'
    assert codec.error(ErrorCode.BROKER_UNAVAILABLE, "m", 0) == \
        b'{"type":"error","code":"broker_unavailable","message":"m","id":0}'


# -- encoders: pubsocket.v1 ---------------------------------------------------------------


def test_v1_delivery_bytes() -> None:
    assert V1.publication("a/b:c", PUB) == \
        b'{"type":"message","topic":"a/b:c","offset":4,"data":{"a":[1,"\xc3\xa9"]}}'
    assert V1.publication("t", Publication(0, "", b"null")) == \
        b'{"type":"message","topic":"t","data":null}'


def test_v1_delivery_is_valid_json_for_every_payload_kind() -> None:
    for data in ({"a": 1}, [1, 2], 's"q\\', None, 1.5, True, 0):
        out = V1.publication("t", Publication(12, "e", orjson.dumps(data)))
        assert json.loads(out) == {"type": "message", "topic": "t", "offset": 12, "data": data}


def test_v1_subscribe_ack_bytes() -> None:
    plain_result = SubscribeResult(Position(5, "ep"))
    assert V1.subscribed(Subscribe("t"), plain_result) is None
    assert V1.subscribed(Subscribe("t", "s"), plain_result) == \
        b'{"type":"ack","id":"s","topic":"t","offset":5,"epoch":"ep"}'
    assert V1.subscribed(Subscribe("t", 1), SubscribeResult(Position(0, ""))) == \
        b'{"type":"ack","id":1,"topic":"t","offset":0,"epoch":""}'


def test_v1_subscribe_with_since_is_answered_even_without_id() -> None:
    since = Position(2, "ep")
    assert V1.subscribed(Subscribe("t", None, since), SubscribeResult(since, True)) == \
        b'{"type":"ack","topic":"t","offset":2,"epoch":"ep","recovered":true}'
    assert V1.subscribed(Subscribe("t", "r", since),
                         SubscribeResult(Position(9, "new"), False)) == \
        b'{"type":"ack","id":"r","topic":"t","offset":9,"epoch":"new","recovered":false}'


def test_v1_replay_goes_as_deliveries_after_the_reply() -> None:
    assert V1.replay_in_reply is False
    assert PLAIN.replay_in_reply is False


def test_v1_publish_and_unsubscribe_ack_bytes() -> None:
    assert V1.published(Publish("t", b"1", "p"), PUB) == b'{"type":"ack","id":"p","offset":4}'
    assert V1.published(Publish("t", b"1", 7), Publication(0, "", b"1")) == \
        b'{"type":"ack","id":7}'
    assert V1.published(Publish("t", b"1"), PUB) is None
    assert V1.done(Unsubscribe("t", "u")) == b'{"type":"ack","id":"u"}'
    assert V1.done(Unsubscribe("t")) is None


def test_v1_history_bytes() -> None:
    assert V1.history(History("t", "h"), PAGE) == (
        b'{"type":"history","id":"h","topic":"t","offset":5,"epoch":"ep","publications":'
        b'[{"offset":4,"data":1},{"offset":5,"data":{"k":null}}]}')
    assert V1.history(History("t", 2), HistoryPage([], Position(0, "e"))) == \
        b'{"type":"history","id":2,"topic":"t","offset":0,"epoch":"e","publications":[]}'


def test_v1_history_without_id_is_valid_json() -> None:
    out = V1.history(History("t"), PAGE)
    assert out is not None
    body = json.loads(out)
    assert body["type"] == "history"
    assert [p["offset"] for p in body["publications"]] == [4, 5]


def test_v1_gap_bytes() -> None:
    assert V1.gap("t", Position(7, "ep")) == b'{"type":"gap","topic":"t","offset":7,"epoch":"ep"}'


# -- the publisher ------------------------------------------------------------------------

ALICE = Publisher("c1", "alice", b'{"name":"Alice"}')
BY_ALICE = Publication(4, "ep", b'{"a":1}', ALICE)
BY_ANON = Publication(0, "", b"[]", Publisher("c2", None))


def test_plain_delivery_ignores_the_publisher() -> None:
    assert PLAIN.publication("t", BY_ALICE) == b'{"a":1}'


def test_v1_delivery_carries_from_byte_exact() -> None:
    assert V1.publication("t", BY_ALICE) == (
        b'{"type":"message","topic":"t","offset":4,"data":{"a":1},'
        b'"from":{"user":"alice","client":"c1","info":{"name":"Alice"}}}')
    assert orjson.loads(V1.publication("t", BY_ANON)) == {
        "type": "message", "topic": "t", "data": [], "from": {"user": None, "client": "c2"}}


def test_v1_history_entries_carry_from_when_set() -> None:
    page = HistoryPage([BY_ALICE, Publication(5, "ep", b"2")], Position(5, "ep"))
    got = orjson.loads(V1.history(History("t", "h"), page) or b"")
    assert got["publications"] == [
        {"offset": 4, "data": {"a": 1},
         "from": {"user": "alice", "client": "c1", "info": {"name": "Alice"}}},
        {"offset": 5, "data": 2}]
