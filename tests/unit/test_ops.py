"""The operations layer on a started hub (memory broker): validation, authorization,
history semantics, limits, and the two error tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pubsocket import Hub, Settings
from pubsocket.auth import Principal
from pubsocket.brokers import MemoryBroker
from pubsocket.brokers.base import HistoryPage, Position
from pubsocket.errors import ErrorCode, Forbidden
from pubsocket.hub.operations import SOCKET, _read_awaited, read_history
from pubsocket.hub.recovery import ANY_EPOCH
from pubsocket.ops import (
    CENTRIFUGO,
    HTTP,
    BadRequest,
    HistoryQuery,
    InvalidTopic,
    LimitExceeded,
    MethodNotFound,
    MissingData,
    NotAvailable,
    Operations,
    OpError,
    PermissionDenied,
    Unavailable,
    UnrecoverablePosition,
)
from pubsocket.ops.errors import lookup
from pubsocket.protocols.centrifuge.codes import error_code


class Sink:
    def deliver(self, frame: bytes) -> None:
        pass

    def close_nowait(self, code: int, reason: str = "") -> None:
        pass


@pytest.fixture
async def ops() -> AsyncIterator[Operations]:
    hub = Hub(Settings(server_api_batch_max=3, server_api_channels_max=2,
                       history_reply_limit=5), MemoryBroker())
    await hub.start()
    yield Operations(hub)
    await hub.close()


def test_every_failure_has_an_entry_in_every_table() -> None:
    """Each failure type, mapped once per dialect: our HTTP API (status, code),
    Centrifugo's server API, the sockets' `ErrorCode` and the Centrifuge socket's number
    (the socket code through `protocols.centrifuge.codes`)."""
    expected = {
        OpError: (500, "internal_error", 100, ErrorCode.BROKER_UNAVAILABLE, 100),
        BadRequest: (400, ErrorCode.BAD_FIELD, 107, ErrorCode.BAD_FIELD, 107),
        InvalidTopic: (400, ErrorCode.INVALID_TOPIC, 107, ErrorCode.INVALID_TOPIC, 102),
        MissingData: (400, ErrorCode.MISSING_DATA, 107, ErrorCode.MISSING_DATA, 107),
        PermissionDenied: (403, ErrorCode.FORBIDDEN, 103, ErrorCode.FORBIDDEN, 103),
        NotAvailable: (404, ErrorCode.PRESENCE_OFF, 108, ErrorCode.PRESENCE_OFF, 108),
        LimitExceeded: (413, "limit_exceeded", 106, ErrorCode.SUBSCRIPTION_LIMIT, 106),
        MethodNotFound: (404, "not_found", 104, ErrorCode.BAD_ACTION, 104),
        UnrecoverablePosition: (409, ErrorCode.UNRECOVERABLE_POSITION, 112,
                                ErrorCode.UNRECOVERABLE_POSITION, 112),
        Unavailable: (503, ErrorCode.BROKER_UNAVAILABLE, 100, ErrorCode.BROKER_UNAVAILABLE,
                      100),
    }
    for cls, (status, code, centrifugo, socket, client) in expected.items():
        exc = cls()
        assert (*lookup(HTTP, exc), lookup(CENTRIFUGO, exc)) == (status, code, centrifugo)
        assert lookup(SOCKET, exc) == socket and error_code(socket) == client
        assert exc.message and str(exc) == exc.message  # a fixed text per type
    assert set(OpError.__subclasses__()) | {InvalidTopic, MissingData} == set(expected) - {
        OpError}
    assert set(SOCKET) == set(HTTP) == set(expected)


def test_the_in_process_names_are_the_same_failures() -> None:
    """`Hub.publish` and `Publisher` document ValueError and `Forbidden`: the operations'
    types are those, so one except clause catches them from every entry point."""
    assert issubclass(InvalidTopic, ValueError) and issubclass(BadRequest, ValueError)
    assert Forbidden is PermissionDenied


async def test_publish_validates_and_authorizes(ops: Operations) -> None:
    with pytest.raises(InvalidTopic):
        await ops.publish("bad topic", 1)
    with pytest.raises(MissingData):
        await ops.publish("t")
    with pytest.raises(BadRequest):
        await ops.publish("t", {1, 2})  # not JSON
    with pytest.raises(BadRequest):
        await ops.publish("t", 1, idempotency_key="k" * 257)
    reader = Principal.from_claims({"sub": "u", "topics": {"publish": ["mine:*"]}})
    with pytest.raises(PermissionDenied):
        await ops.publish("theirs:1", 1, principal=reader)
    pub = await ops.publish("mine:1", None, principal=reader)  # null is data
    assert pub.offset == 1 and pub.payload == b"null" and pub.publisher is not None
    assert pub.publisher.user == "u"


async def test_idempotent_publish_answers_the_first_position(ops: Operations) -> None:
    first = await ops.publish("t", 1, idempotency_key="k")
    again = await ops.publish("t", 2, idempotency_key="k")
    other = await ops.publish("t", 3, idempotency_key="k2")
    assert (again.offset, again.epoch) == (first.offset, first.epoch)
    assert other.offset == first.offset + 1


async def test_history_shapes(ops: Operations) -> None:
    for n in range(1, 8):
        await ops.publish("h", n)
    position = await ops.history(HistoryQuery("h"))
    assert position.publications == [] and position.position.offset == 7
    epoch = position.position.epoch

    def offsets(page: Any) -> list[int]:
        return [p.offset for p in page.publications]

    assert offsets(await ops.history(HistoryQuery("h", 2))) == [1, 2]
    assert offsets(await ops.history(HistoryQuery("h", 2, newest=True))) == [6, 7]
    assert offsets(await ops.history(HistoryQuery("h", 2, reverse=True))) == [7, 6]
    assert offsets(await ops.history(HistoryQuery("h", 2, Position(5, epoch)))) == [6, 7]
    assert offsets(await ops.history(HistoryQuery("h", 2, Position(5, epoch),
                                                  reverse=True))) == [4, 3]
    # capped by history_reply_limit (5 here)
    assert offsets(await ops.history(HistoryQuery("h", 100))) == [1, 2, 3, 4, 5]
    with pytest.raises(UnrecoverablePosition):
        await ops.history(HistoryQuery("h", 2, Position(5, "other")))
    with pytest.raises(UnrecoverablePosition):
        await ops.history(HistoryQuery("h", 2, Position(5, "other"), reverse=True))
    with pytest.raises(BadRequest):
        await ops.history(HistoryQuery("h", -1))
    await ops.history_remove("h")
    gone = await ops.history(HistoryQuery("h", 10))
    assert gone.publications == [] and gone.position == Position(7, epoch)


async def test_history_required_and_presence_off_are_not_available(ops: Operations) -> None:
    ops.hub.rules.prepend({"nohist:*": None})
    assert (await ops.history(HistoryQuery("nohist:1", 5))).publications == []
    with pytest.raises(NotAvailable):
        await ops.history(HistoryQuery("nohist:1", 5), require_history=True)
    with pytest.raises(NotAvailable):
        await ops.presence("t")
    with pytest.raises(NotAvailable):
        await ops.presence_stats("t")


async def test_broadcast_and_channels_are_capped(ops: Operations) -> None:
    outcomes = await ops.broadcast(["a", "bad topic", "b"], {"x": 1})
    assert [type(o).__name__ for o in outcomes] == ["Publication", "InvalidTopic",
                                                    "Publication"]
    with pytest.raises(LimitExceeded):
        await ops.broadcast(["a", "b", "c", "d"], 1)
    with pytest.raises(BadRequest):
        await ops.broadcast("a", 1)
    sinks = [Sink() for _ in range(3)]
    for n, topic in enumerate(("chat:a", "chat:b", "news:c")):
        for sink in sinks[: n + 1]:
            await ops.hub.subscribe(sink, topic)
    assert await ops.channels() == {"news:c": 3, "chat:b": 2}  # the busiest 2
    assert await ops.channels("chat:*") == {"chat:b": 2, "chat:a": 1}
    assert await ops.channels("none:*") == {}
    with pytest.raises(BadRequest):
        await ops.channels(5)
    info = ops.info()
    assert (info.topics, info.subscriptions) == (3, 6)
    assert ops.nodes() == [info]  # one process (memory broker): this node only


async def test_user_commands_validate_their_fields(ops: Operations) -> None:
    with pytest.raises(BadRequest):
        await ops.subscribe_user("", "t")
    with pytest.raises(InvalidTopic):
        await ops.unsubscribe_user("u", "bad topic")
    with pytest.raises(BadRequest):
        await ops.disconnect_user("u", code=1000)  # not an application close code
    with pytest.raises(BadRequest):
        await ops.disconnect_user("u", client=5)
    await ops.disconnect_user("u", code=4500, reason="bye")  # nobody here: fine


async def test_the_inline_and_awaited_history_reads_agree(ops: Operations) -> None:
    """`read_history` answers forward reads inline on the memory broker; the awaited
    reads (Redis's path, and every reverse read) must give the same page or the same
    refusal for every query shape."""
    hub = ops.hub
    for n in range(1, 8):
        await ops.publish("h", n)
    epoch = (await hub.history("h", None, 0)).position.epoch
    queries = [HistoryQuery("h"), HistoryQuery("h", 2), HistoryQuery("h", 2, newest=True),
               HistoryQuery("h", 3, reverse=True), HistoryQuery("h", 2, Position(5, epoch)),
               HistoryQuery("h", 2, Position(5, ANY_EPOCH), reverse=True),
               HistoryQuery("h", 9, Position(2, epoch)), HistoryQuery("h", 2, Position(5, "x")),
               HistoryQuery("h", 2, Position(5, "x"), reverse=True),
               HistoryQuery("h", 2, Position(9, epoch), reverse=True)]
    for query in queries:
        args = (hub, "h", hub.reply_limit(query.limit), query.since, query.reverse,
                query.newest)
        try:
            result = read_history(hub, "h", query.limit, query.since,
                                  reverse=query.reverse, newest=query.newest)
            page = result if isinstance(result, HistoryPage) else await result
        except UnrecoverablePosition:
            with pytest.raises(UnrecoverablePosition):
                await _read_awaited(*args)
            continue
        assert isinstance(result, HistoryPage) is not query.reverse, query  # inline
        assert await _read_awaited(*args) == page, query
    page = await _read_awaited(hub, "h", 2, Position(5, ANY_EPOCH), True, False)
    assert [p.offset for p in page.publications] == [3, 4]
