"""`CommandRelay` on one node (memory broker): local feeding, bounds, bad input, and a real
`Session` fed through it (rate-limited like a socket). Two nodes on Redis:
tests/brokers/test_relay_redis.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from pubsocket import CloseCode, Hub, Settings
from pubsocket.brokers import MemoryBroker
from pubsocket.codecs import V1
from pubsocket.hub.relay import MAX_ID, CommandRelay, RouteResult
from pubsocket.hub.session import Session
from tests.unit.test_session import MemoryPeer


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    h = Hub(Settings(max_message_size=1000), MemoryBroker())
    await h.start()
    yield h
    await h.close()


async def test_node_ids_are_random_per_hub_and_the_relay_is_ready_at_once(hub: Hub) -> None:
    other = Hub(Settings(), MemoryBroker())
    await other.start()
    try:
        assert hub.relay.node != other.relay.node
        assert len(hub.relay.node) == 16 and int(hub.relay.node, 16) >= 0
        assert hub.relay.topic == "$n:" + hub.relay.node
        assert hub.relay.ready and other.relay.ready  # memory: nothing to subscribe
    finally:
        await other.close()


async def test_a_local_session_is_fed_synchronously_in_call_order(hub: Hub) -> None:
    fed: list[bytes] = []
    hub.relay.register("s1", fed.append)
    assert await hub.relay.route(hub.relay.node, "s1", b"one") is RouteResult.LOCAL_FED
    assert fed == [b"one"]  # already there when route returns
    for i in range(50):
        assert await hub.relay.route(hub.relay.node, "s1", b"%d" % i) is RouteResult.LOCAL_FED
    assert fed[1:] == [b"%d" % i for i in range(50)]
    assert hub.relay.stats.fed_local == 51
    assert hub.stats.published == 0  # no broker traffic for a local session


async def test_unknown_and_unregistered_sessions_are_unknown(hub: Hub) -> None:
    fed: list[bytes] = []
    assert await hub.relay.route(hub.relay.node, "s1", b"x") is RouteResult.UNKNOWN_SESSION
    hub.relay.register("s1", fed.append)
    hub.relay.unregister("s1")
    hub.relay.unregister("s1")  # idempotent
    assert await hub.relay.route(hub.relay.node, "s1", b"x") is RouteResult.UNKNOWN_SESSION
    assert fed == [] and len(hub.relay) == 0


async def test_another_node_on_a_memory_broker_is_unknown_without_broker_traffic(
        hub: Hub) -> None:
    """Single process: no other node can hold the session (e.g. a restarted server's
    old node id), so the client is told at once (404) and reconnects."""
    hub.relay.register("s1", lambda data: None)
    for node in ("0123456789abcdef", hub.relay.node + "x", "", "a b", "n" * 500):
        assert await hub.relay.route(node, "s1", b"x") is RouteResult.UNKNOWN_SESSION
    assert hub.stats.published == 0


async def test_data_over_the_cap_is_too_large_and_never_fed(hub: Hub) -> None:
    fed: list[bytes] = []
    hub.relay.register("s1", fed.append)
    assert hub.relay.max_bytes == 1000  # the hub's max_message_size
    assert await hub.relay.route(hub.relay.node, "s1", b"x" * 1001) is RouteResult.TOO_LARGE
    assert await hub.relay.route("elsewhere", "s1", b"x" * 1001) is RouteResult.TOO_LARGE
    assert await hub.relay.route(hub.relay.node, "s1", b"x" * 1000) is RouteResult.LOCAL_FED
    assert fed == [b"x" * 1000]


def test_ids_the_relay_cannot_carry_are_refused_at_registration() -> None:
    relay = CommandRelay(MemoryBroker, max_bytes=0)
    for bad in ("", "a b", "a\nb", "é", "x" * (MAX_ID + 1)):
        with pytest.raises(ValueError, match="printable ASCII"):
            relay.register(bad, lambda data: None)
    relay.register("x" * MAX_ID, lambda data: None)
    with pytest.raises(ValueError, match="already"):
        relay.register("x" * MAX_ID, lambda data: None)
    with pytest.raises(ValueError, match="16 lowercase hex"):
        CommandRelay(MemoryBroker, max_bytes=0, node="has space")
    assert CommandRelay(MemoryBroker, max_bytes=0, node="0123456789abcdef").node == (
        "0123456789abcdef")


async def test_a_feed_that_raises_is_logged_and_the_relay_goes_on(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    def broken(data: bytes) -> None:
        raise RuntimeError("transport bug")

    fed: list[bytes] = []
    hub.relay.register("bad", broken)
    hub.relay.register("good", fed.append)
    with caplog.at_level(logging.ERROR, "pubsocket.hub"):
        assert await hub.relay.route(hub.relay.node, "bad", b"x") is RouteResult.LOCAL_FED
        hub.relay.receive(b"bad\nx")  # the routed path too: never into the broker reader
    assert [r.message for r in caplog.records].count("feeding a relayed command raised") == 2
    assert await hub.relay.route(hub.relay.node, "good", b"y") is RouteResult.LOCAL_FED
    assert fed == [b"y"]


async def test_routed_messages_for_no_session_or_malformed_are_dropped_quietly(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    fed: list[bytes] = []
    hub.relay.register("s1", fed.append)
    with caplog.at_level(logging.DEBUG, "pubsocket.hub"):
        for message in (b"gone\n{}", b"no separator", b"", b"\xff\xfe\n{}", b"\n{}"):
            hub.relay.receive(message)
    assert fed == [] and hub.relay.stats.dropped == 5
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    hub.relay.receive(b"s1\n{\"a\":\n1}")  # the data may hold the separator itself
    assert fed == [b"{\"a\":\n1}"] and hub.relay.stats.fed_routed == 1


async def test_a_closed_hub_stops_its_relay() -> None:
    h = Hub(Settings(), MemoryBroker())
    await h.start()
    assert h.relay.ready
    await h.close()
    assert not h.relay.ready


async def test_a_session_fed_through_the_relay_runs_commands_and_is_rate_limited(
        hub: Hub) -> None:
    """What the HTTP transport wires (the POSTed bytes as the text message a WebSocket
    would carry, through `Session.on_message`) adds no way around the socket rules:
    each command spends a rate-limit token; past the burst the session closes with
    4029 like a WebSocket one."""
    peer = MemoryPeer()
    session = Session(hub, peer, Settings(rate_limit=0.01, rate_burst=3), codec=V1)
    hub.relay.register("s1", lambda data: session.on_message(data.decode()))
    try:
        subscribe = json.dumps({"action": "subscribe", "topic": "t", "id": 1}).encode()
        assert await hub.relay.route(hub.relay.node, "s1", subscribe) is RouteResult.LOCAL_FED
        await _until(lambda: bool(peer.frames))
        assert json.loads(peer.frames[0])["type"] == "ack"
        for i in range(2):
            publish = json.dumps({"action": "publish", "topic": "t", "data": i}).encode()
            assert await hub.relay.route(hub.relay.node, "s1", publish) is (
                RouteResult.LOCAL_FED)
        assert peer.close_code is None
        assert await hub.relay.route(hub.relay.node, "s1", publish) is RouteResult.LOCAL_FED
        assert peer.close_code == CloseCode.RATE_LIMITED
    finally:
        session.on_close()
        hub.relay.unregister("s1")


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(3):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_shared_broker_with_nobody_on_the_node_channel_is_unknown() -> None:
    """A shared broker that counts (here the memory broker claiming to be shared, the
    way tests/unit/test_hub.py does): a command for a node nobody listens for went
    nowhere, so it is UNKNOWN_SESSION (404), counted in `unreachable`, not SENT."""
    from tests.unit.test_hub import SharedMemoryBroker

    h = Hub(Settings(), SharedMemoryBroker())
    await h.start()
    try:
        assert h.relay.ready
        assert await h.relay.route("0123456789abcdef", "s1", b"x") is (
            RouteResult.UNKNOWN_SESSION)
        assert h.relay.stats.unreachable == 1 and h.relay.stats.sent == 0
        assert h.stats.published == 0  # the relay's publish is not a hub publication
        fed: list[bytes] = []
        h.relay.register("s1", fed.append)  # its own node: fed here, no publish
        assert await h.relay.route(h.relay.node, "s1", b"y") is RouteResult.LOCAL_FED
        assert fed == [b"y"]
    finally:
        await h.close()
