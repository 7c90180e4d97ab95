"""Session ordering with a pipelining broker: acks in command order, barriers, failures.

`PipelinedBroker` is the real memory broker whose `publish_nowait` returns a future that
completes on a later loop iteration, in call order, like a pipelining broker (Redis).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pubsocket import BrokerUnavailable, Hub, Settings
from pubsocket.brokers import HistoryPolicy, MemoryBroker, Publication, Publisher
from pubsocket.codecs import V1
from pubsocket.hub.session import Session
from tests.unit.test_session import MemoryPeer, sub_ack


class PipelinedBroker(MemoryBroker):
    """Publishes are queued in order and complete on the next loop iterations. A payload
    listed in `fail` completes with `BrokerUnavailable` instead (nothing is published)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[bytes] = set()
        self.calls = 0
        self.calls_at_first_completion: int | None = None
        self.completed = 0

    def publish_nowait(self, topic: str, payload: bytes, policy: HistoryPolicy,
                       publisher: Publisher | None = None) -> asyncio.Future[Publication]:
        self.calls += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Publication] = loop.create_future()

        def complete() -> None:
            if self.calls_at_first_completion is None:
                self.calls_at_first_completion = self.calls
            self.completed += 1
            if payload in self.fail:
                future.set_exception(BrokerUnavailable("lost"))
            else:
                future.set_result(MemoryBroker.publish_nowait(self, topic, payload, policy,
                                                              publisher))

        loop.call_soon(loop.call_soon, complete)  # two iterations later, FIFO
        return future

    async def publish(self, topic: str, payload: bytes, policy: HistoryPolicy,
                      publisher: Publisher | None = None) -> Publication:
        return await self.publish_nowait(topic, payload, policy, publisher)


@pytest.fixture
async def piped() -> AsyncIterator[tuple[Hub, PipelinedBroker]]:
    broker = PipelinedBroker()
    hub = Hub(Settings(), broker)
    await hub.start()
    yield hub, broker
    await hub.close()


def send(session: Session, *commands: dict[str, Any]) -> None:
    for c in commands:
        session.on_message(json.dumps(c))


async def until_frames(peer: MemoryPeer, n: int) -> None:
    async with asyncio.timeout(2):
        while len(peer.frames) < n:
            await asyncio.sleep(0)
    for _ in range(20):  # and nothing more arrives
        await asyncio.sleep(0)
    assert len(peer.frames) == n, peer.received


def pub(topic: str, data: Any, cmd_id: Any) -> dict[str, Any]:
    return {"action": "publish", "topic": topic, "data": data, "id": cmd_id}


async def test_pipelined_publishes_are_acked_in_command_order(
        piped: tuple[Hub, PipelinedBroker]) -> None:
    hub, broker = piped
    peer = MemoryPeer()
    session = Session(hub, peer, Settings(), codec=V1)
    send(session, *(pub("t", n, n) for n in range(1, 6)))
    assert peer.frames == []  # nothing is done yet
    await until_frames(peer, 5)
    assert peer.received == [{"type": "ack", "id": n, "offset": n} for n in range(1, 6)]
    assert broker.calls_at_first_completion == 5  # all five were in flight together
    session.on_close()


async def test_a_subscribe_after_publishes_waits_for_them(
        piped: tuple[Hub, PipelinedBroker]) -> None:
    hub, broker = piped
    peer = MemoryPeer()
    session = Session(hub, peer, Settings(), codec=V1)
    send(session, pub("t", "a", 1), pub("t", "b", 2),
         {"action": "subscribe", "topic": "t", "id": "s"},
         pub("t", "c", 3))
    assert hub.subscriber_count("t") == 0  # the subscribe is held behind the publishes
    await until_frames(peer, 5)
    # the subscription starts after the two earlier publishes: it does not receive them,
    # and its ack carries their position; the later publish is delivered, then acked
    assert peer.received == [
        {"type": "ack", "id": 1, "offset": 1},
        {"type": "ack", "id": 2, "offset": 2},
        sub_ack("s", "t", 2),
        {"type": "message", "topic": "t", "offset": 3, "data": "c"},
        {"type": "ack", "id": 3, "offset": 3},
    ]
    assert broker.completed == 3
    session.on_close()


async def test_an_unsubscribe_ack_comes_after_the_publish_acks_before_it(
        piped: tuple[Hub, PipelinedBroker]) -> None:
    hub, _ = piped
    peer = MemoryPeer()
    session = Session(hub, peer, Settings(), codec=V1)
    send(session, pub("t", 1, "p1"), {"action": "unsubscribe", "topic": "t", "id": "u"},
         pub("t", 2, "p2"))
    await until_frames(peer, 3)
    assert peer.received == [{"type": "ack", "id": "p1", "offset": 1}, {"type": "ack", "id": "u"},
                             {"type": "ack", "id": "p2", "offset": 2}]
    session.on_close()


async def test_a_failed_publish_gets_an_error_with_its_id_and_later_acks_still_arrive(
        piped: tuple[Hub, PipelinedBroker]) -> None:
    hub, broker = piped
    broker.fail = {b'"bad"'}
    peer = MemoryPeer()
    session = Session(hub, peer, Settings(max_protocol_errors=1), codec=V1)
    send(session, pub("t", "ok1", "a"), pub("t", "bad", "b"), pub("t", "ok2", "c"),
         {"action": "subscribe", "topic": "t", "id": "s"}, pub("t", "ok3", "d"))
    await until_frames(peer, 6)
    got = peer.received
    assert got[0] == {"type": "ack", "id": "a", "offset": 1}
    assert got[1]["type"] == "error"
    assert got[1]["code"] == "broker_unavailable"
    assert got[1]["id"] == "b"
    assert isinstance(got[1]["message"], str) and got[1]["message"]
    assert got[2:] == [
        {"type": "ack", "id": "c", "offset": 2},
        sub_ack("s", "t", 2),
        {"type": "message", "topic": "t", "offset": 3, "data": "ok3"},
        {"type": "ack", "id": "d", "offset": 3},
    ]
    assert session.errors == 0  # the server's fault: not counted toward the error limit
    assert peer.close_code is None
    session.on_close()


async def test_pull_mode_waits_for_pipelined_publishes(
        piped: tuple[Hub, PipelinedBroker]) -> None:
    hub, _ = piped
    peer = MemoryPeer()
    peer.send(*(pub("t", n, n) for n in range(1, 4)))
    peer.hang_up()
    session = Session(hub, peer, Settings(), codec=V1)
    await asyncio.wait_for(session.run(), 2)
    assert peer.received == [{"type": "ack", "id": n, "offset": n} for n in range(1, 4)]


async def test_a_history_read_after_publishes_sees_them(
        piped: tuple[Hub, PipelinedBroker]) -> None:
    hub, _ = piped
    peer = MemoryPeer()
    session = Session(hub, peer, Settings(), codec=V1)
    send(session, pub("h", "a", 1), pub("h", "b", 2),
         {"action": "history", "topic": "h", "id": "q"})
    await until_frames(peer, 3)
    got = peer.received
    assert got[:2] == [{"type": "ack", "id": 1, "offset": 1}, {"type": "ack", "id": 2, "offset": 2}]
    assert got[2] == {"type": "history", "id": "q", "topic": "h", "offset": 2, "epoch": "E",
                      "publications": [{"offset": 1, "data": "a"},
                                       {"offset": 2, "data": "b"}]}
    session.on_close()


async def test_an_error_between_pipelined_publishes_keeps_its_place(
        piped: tuple[Hub, PipelinedBroker]) -> None:
    hub, _ = piped
    peer = MemoryPeer()
    session = Session(hub, peer, Settings(), codec=V1)
    send(session, pub("t", 1, "a"))
    session.on_message("{")
    send(session, pub("bad topic", 1, "x"), pub("t", 2, "b"))
    await until_frames(peer, 4)
    got = peer.received
    assert got[0] == {"type": "ack", "id": "a", "offset": 1}
    assert (got[1]["code"], "id" in got[1]) == ("bad_json", False)
    assert (got[2]["code"], got[2]["id"]) == ("invalid_topic", "x")
    assert got[3] == {"type": "ack", "id": "b", "offset": 2}
    assert session.errors == 2
    session.on_close()
