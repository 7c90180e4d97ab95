"""The Centrifuge JSON codec without a socket: parsing edge cases and exact encodings."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pubsocket.brokers.base import HistoryPage, Position, Publication, Publisher
from pubsocket.errors import CloseCode, ProtocolViolation
from pubsocket.presence.base import ClientInfo, Stats
from pubsocket.protocol import (
    MAX_HISTORY_LIMIT,
    Connect,
    ErrorCode,
    History,
    Presence,
    Publish,
    Refresh,
    Rpc,
    SubRefresh,
    Subscribe,
    SubscribeResult,
    Unsubscribe,
)
from pubsocket.protocols.centrifuge import CENTRIFUGE
from pubsocket.protocols.centrifuge.codec import ttl_of
from pubsocket.protocols.centrifuge.codes import CLOSE_CODES
from pubsocket.protocols.centrifuge.parse import parse_frame


def one(line: Any) -> Any:
    parsed = parse_frame(line if isinstance(line, str) else json.dumps(line))
    assert len(parsed) == 1
    return parsed[0]


def violation(line: Any) -> ProtocolViolation:
    got = one(line)
    assert isinstance(got, ProtocolViolation)
    return got


def test_a_frame_holds_commands_in_order_and_pongs_are_nothing() -> None:
    text = "\n".join([
        json.dumps({"id": 1, "connect": {"token": "t", "data": {"a": 1}, "name": "js",
                                         "version": "5"}}),
        "", "{}",
        json.dumps({"id": 2, "subscribe": {"channel": "c", "recover": True, "offset": "7",
                                           "epoch": "e", "token": "st"}}),
        json.dumps({"id": 3, "publish": {"channel": "c", "data": [1, "x"]}}),
        json.dumps({"id": 4, "rpc": {"method": "m"}}),
        json.dumps({"id": 5, "sub_refresh": {"channel": "c", "token": "s2"}}),
        json.dumps({"id": 6, "refresh": {"token": "r"}}),
        json.dumps({"id": 7, "presence_stats": {"channel": "c"}}),
        json.dumps({"id": 8, "unsubscribe": {"channel": "c"}}),
        "  ",
    ])
    assert parse_frame(text) == [
        Connect("t", b'{"a":1}', "js", "5", 1),
        Subscribe("c", 2, Position(7, "e"), "st"),
        Publish("c", b'[1,"x"]', 3),
        Rpc("m", b"null", 4),
        SubRefresh("c", "s2", 5),
        Refresh("r", 6),
        Presence("c", 7, stats=True),
        Unsubscribe("c", 8),
    ]
    assert parse_frame("{}") == [] and parse_frame('{"ping":{}}') == []


def test_history_limits_since_and_reverse() -> None:
    # Without since and not reversed, Centrifugo reads from the oldest kept publication.
    assert one({"id": 1, "history": {"channel": "c"}}) == History("c", 1, None, 0, oldest=True)
    assert one({"id": 1, "history": {"channel": "c", "limit": -1, "reverse": True}}) == \
        History("c", 1, None, MAX_HISTORY_LIMIT, True)
    assert one({"id": 1, "history": {"channel": "c", "limit": 10**6,
                                     "since": {"offset": 3, "epoch": "e"}}}) == \
        History("c", 1, Position(3, "e"), MAX_HISTORY_LIMIT)
    assert one({"id": 1, "subscribe": {"channel": "c"}}).since is None  # no recover flag


@pytest.mark.parametrize(("line", "code"), [
    ("nope", ErrorCode.BAD_JSON),
    ("[1]", ErrorCode.BAD_JSON),
    ({"id": "x", "publish": {}}, ErrorCode.BAD_ID),
    ({"id": True, "publish": {}}, ErrorCode.BAD_ID),
    ({"id": -1, "publish": {}}, ErrorCode.BAD_ID),
    ({"id": 1}, ErrorCode.BAD_ACTION),
    ({"id": 1, "frobnicate": {}}, ErrorCode.BAD_ACTION),
    ({"id": 1, "publish": {}, "subscribe": {}}, ErrorCode.BAD_ACTION),
    ({"send": {"data": 1}}, ErrorCode.BAD_ACTION),
    ({"id": 1, "publish": []}, ErrorCode.BAD_FIELD),
    ({"id": 1, "publish": {"channel": "c"}}, ErrorCode.MISSING_DATA),
    ({"id": 1, "publish": {"channel": "no spaces", "data": 1}}, ErrorCode.INVALID_TOPIC),
    ({"id": 1, "subscribe": {"channel": "c", "recover": True, "offset": -1}},
     ErrorCode.BAD_FIELD),
    ({"id": 1, "subscribe": {"channel": "c", "recover": True, "epoch": 5}},
     ErrorCode.BAD_FIELD),
    ({"id": 1, "history": {"channel": "c", "limit": "9"}}, ErrorCode.BAD_FIELD),
    ({"id": 1, "history": {"channel": "c", "since": 3}}, ErrorCode.BAD_FIELD),
    ({"id": 1, "refresh": {}}, ErrorCode.BAD_FIELD),
    ({"id": 1, "connect": {"token": 5}}, ErrorCode.BAD_FIELD),
    ({"id": 1, "connect": {"name": "x" * 300}}, ErrorCode.BAD_FIELD),
])
def test_malformed_commands_are_clear_violations(line: Any, code: ErrorCode) -> None:
    exc = violation(line)
    assert exc.code == code
    assert "x" * 300 not in exc.message and "no spaces" not in exc.message  # no input echo
    fatal = CENTRIFUGE.violation_close(exc)
    assert fatal == (None if code == ErrorCode.INVALID_TOPIC else (3501, "bad request"))


def test_parsing_stops_at_the_first_violation() -> None:
    text = "\n".join(["{", json.dumps({"id": 2, "unsubscribe": {"channel": "c"}})])
    [only] = parse_frame(text)
    assert isinstance(only, ProtocolViolation)


def test_publication_is_built_around_the_stored_payload() -> None:
    assert CENTRIFUGE.publication("t", Publication(4, "e", b'{"a":1}')) == \
        b'{"push":{"channel":"t","pub":{"data":{"a":1},"offset":4}}}'
    assert CENTRIFUGE.publication("t", Publication(0, "", b"7")) == \
        b'{"push":{"channel":"t","pub":{"data":7}}}'


def test_subscribe_replies() -> None:
    live = SubscribeResult(Position(5, "ep"))
    assert json.loads(CENTRIFUGE.subscribed(Subscribe("t", 1), live) or b"") == {
        "id": 1, "subscribe": {"recoverable": True, "positioned": True, "epoch": "ep",
                               "offset": 5}}
    replayed = SubscribeResult(Position(7, "ep"), True, (
        Publication(6, "ep", b'"a"'), Publication(7, "ep", b'"b"')))
    got = json.loads(CENTRIFUGE.subscribed(Subscribe("t", 2, Position(5, "ep")),
                                           replayed) or b"")
    assert got["subscribe"]["recovered"] is True and got["subscribe"]["was_recovering"]
    assert got["subscribe"]["publications"] == [{"data": "a", "offset": 6},
                                                {"data": "b", "offset": 7}]
    no_history = json.loads(CENTRIFUGE.subscribed(Subscribe("t", 3),
                                                  SubscribeResult(Position(0, ""))) or b"")
    assert no_history == {"id": 3, "subscribe": {}}
    expiring = Subscribe("t", 4, expires_at=time.time() + 30.5)
    body = json.loads(CENTRIFUGE.subscribed(expiring, live) or b"")["subscribe"]
    assert body["expires"] is True and body["ttl"] in (29, 30)
    assert CENTRIFUGE.subscribed(Subscribe("t"), live) is None  # no id, no reply


def test_errors_carry_numeric_codes_and_temporary() -> None:
    assert json.loads(CENTRIFUGE.error(ErrorCode.FORBIDDEN, "ignored text", 3)) == {
        "id": 3, "error": {"code": 103, "message": "permission denied"}}
    assert json.loads(CENTRIFUGE.error(ErrorCode.BROKER_UNAVAILABLE, "x", 4)) == {
        "id": 4, "error": {"code": 100, "message": "internal server error",
                           "temporary": True}}
    assert json.loads(CENTRIFUGE.error(ErrorCode.UNRECOVERABLE_POSITION, "x", 5))[
        "error"]["code"] == 112
    assert json.loads(CENTRIFUGE.error_code(109, None)) == {
        "error": {"code": 109, "message": "token expired"}}


def test_pushes_and_other_replies() -> None:
    alice = ClientInfo("c1", "alice", {"n": 1})
    anon = ClientInfo("c2", None, None)
    assert json.loads(CENTRIFUGE.join("t", alice) or b"") == {"push": {"channel": "t", "join": {
        "info": {"user": "alice", "client": "c1", "conn_info": {"n": 1}}}}}
    assert json.loads(CENTRIFUGE.leave("t", anon) or b"")["push"]["leave"]["info"] == {
        "user": "", "client": "c2"}
    assert json.loads(CENTRIFUGE.gap("t", Position(3, "e")) or b"") == {"push": {
        "channel": "t", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}}
    assert json.loads(CENTRIFUGE.unsubscribed("t", "forbidden") or b"")["push"][
        "unsubscribe"]["code"] == 2000
    assert json.loads(CENTRIFUGE.presence(Presence("t", 1), {"c1": alice}) or b"") == {
        "id": 1, "presence": {"presence": {"c1": {"user": "alice", "client": "c1",
                                                  "conn_info": {"n": 1}}}}}
    assert json.loads(CENTRIFUGE.presence_stats(Presence("t", 2, stats=True),
                                                Stats(3, 2)) or b"") == {
        "id": 2, "presence_stats": {"num_clients": 3, "num_users": 2}}
    page = HistoryPage([Publication(1, "e", b"1"), Publication(2, "e", b"2")],
                       Position(2, "e"))
    assert [p["offset"] for p in json.loads(CENTRIFUGE.history(
        History("t", 1, None, 2, True), page) or b"")["history"]["publications"]] == [2, 1]
    assert CENTRIFUGE.rpc_result(9, b'{"ok":1}') == b'{"id":9,"rpc":{"data":{"ok":1}}}'
    assert json.loads(CENTRIFUGE.connected(1, "cid", "v", None, 0) or b"") == {
        "id": 1, "connect": {"client": "cid", "version": "v"}}
    assert CENTRIFUGE.expiring(time.time()) is None  # the SDK refreshes from the ttl
    assert ttl_of(None) == {} and ttl_of(time.time() - 5) == {"expires": True, "ttl": 0}


def test_transport_closes_map_to_the_protocol_codes() -> None:
    assert CLOSE_CODES[CloseCode.SLOW_CONSUMER] == (3008, "slow")
    assert CLOSE_CODES[CloseCode.GOING_AWAY] == (3001, "shutdown")
    assert CLOSE_CODES[CloseCode.DISCONNECTED] == (3503, "force disconnect")
    assert CLOSE_CODES[CloseCode.AUTH_EXPIRED] == (3005, "connection expired")
    assert CLOSE_CODES[CloseCode.RATE_LIMITED] == (3013, "too many requests")
    reconnecting = {CloseCode.GOING_AWAY, CloseCode.SLOW_CONSUMER, CloseCode.AUTH_EXPIRED,
                    CloseCode.RATE_LIMITED, CloseCode.INTERNAL_ERROR}
    for ours, (theirs, reason) in CLOSE_CODES.items():
        assert reason and (theirs < 3500) == (ours in reconnecting)


def test_publication_carries_the_publisher_as_client_info() -> None:
    alice = Publisher("c1", "alice", b'{"name":"Alice"}')
    assert CENTRIFUGE.publication("t", Publication(4, "e", b'{"a":1}', alice)) == (
        b'{"push":{"channel":"t","pub":{"data":{"a":1},"offset":4,'
        b'"info":{"user":"alice","client":"c1","conn_info":{"name":"Alice"}}}}}')
    anon = Publication(0, "", b"7", Publisher("c2", None))
    assert json.loads(CENTRIFUGE.publication("t", anon))["push"]["pub"] == {
        "data": 7, "info": {"user": "", "client": "c2"}}  # no conn_info without info
    replay = SubscribeResult(Position(4, "e"), True, (Publication(4, "e", b"1", alice),))
    got = json.loads(CENTRIFUGE.subscribed(Subscribe("t", 1, Position(3, "e")), replay) or b"")
    assert got["subscribe"]["publications"][0]["info"]["conn_info"] == {"name": "Alice"}
    page = HistoryPage([Publication(4, "e", b"1", alice), Publication(5, "e", b"2")],
                       Position(5, "e"))
    pubs = json.loads(CENTRIFUGE.history(History("t", 2), page) or b"")["history"]["publications"]
    assert [p.get("info", {}).get("user") for p in pubs] == ["alice", None]
