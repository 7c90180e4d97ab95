"""`CommandRelay` across nodes: two hubs on one real Redis (no sticky sessions).

A session registered on node A; node B routes commands to it through Redis. The outage
tests run their own ``redis-server`` (test_redis_faults.RedisServer) and SIGKILL it, or
cut node A's own link to it (a TCP proxy between A and Redis that aborts and refuses).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from pubsocket import Hub, Settings
from pubsocket.brokers.redis import backoff
from pubsocket.codecs import V1
from pubsocket.hub.relay import RouteResult
from pubsocket.hub.session import Session
from tests.brokers.hubs import MakeHub, RedisHubs, until
from tests.link_proxy import Link
from tests.unit.test_session import MemoryPeer

from .test_redis_faults import RedisServer, server  # noqa: F401 - the fixture


@pytest.fixture
def make_hub(redis_hubs: RedisHubs) -> MakeHub:
    """Started hubs sharing one fresh prefix of the test Redis, their relays subscribed;
    `url` replaces the prefix's, `broker` goes to RedisBroker."""

    async def make(url: str | None = None, **broker: Any) -> Hub:
        return await redis_hubs.start(Settings(max_message_size=4096), url, **broker)

    return make


async def test_a_command_routed_on_b_reaches_the_session_on_a_in_order(make_hub: MakeHub) -> None:
    a, b = await make_hub(), await make_hub()
    fed: list[bytes] = []
    a.relay.register("s1", fed.append)
    # Many in flight at once (like concurrent POSTs handled by B): fed in call order.
    results = await asyncio.gather(*(b.relay.route(a.relay.node, "s1", b"cmd %d" % i)
                                     for i in range(300)))
    assert set(results) == {RouteResult.SENT}
    await until(lambda: len(fed) == 300)
    assert fed == [b"cmd %d" % i for i in range(300)]
    assert a.relay.stats.fed_routed == 300 and b.relay.stats.sent == 300
    # A's own route of the same session stays local: no broker traffic.
    assert await a.relay.route(a.relay.node, "s1", b"local") is RouteResult.LOCAL_FED
    assert fed[-1] == b"local"


async def test_binary_data_with_the_separator_crosses_unchanged(make_hub: MakeHub) -> None:
    """Protobuf emulation carries binary commands: any bytes, newlines included."""
    a, b = await make_hub(), await make_hub()
    fed: list[bytes] = []
    a.relay.register("s1", fed.append)
    data = bytes(range(256)) + b"\n\r\n0::~5:"
    assert await b.relay.route(a.relay.node, "s1", data) is RouteResult.SENT
    await until(lambda: bool(fed))
    assert fed == [data]


async def test_a_real_session_on_a_runs_commands_posted_on_b(make_hub: MakeHub) -> None:
    """The commands run as if sent on A's socket: B's subscribe and publish are answered
    on A's peer, and the publication reaches A's session."""
    a, b = await make_hub(), await make_hub()
    peer = MemoryPeer()
    session = Session(a, peer, a.settings, codec=V1)
    a.relay.register("s1", lambda data: session.on_message(data.decode()))
    try:
        for cmd in ({"action": "subscribe", "topic": "room", "id": 1},
                    {"action": "publish", "topic": "room", "data": {"hi": 1}, "id": 2}):
            result = await b.relay.route(a.relay.node, "s1", json.dumps(cmd).encode())
            assert result is RouteResult.SENT
        await until(lambda: len(peer.frames) >= 3)
        got = [json.loads(f) for f in peer.frames]
        assert [m.get("id") for m in got if m["type"] == "ack"] == [1, 2]
        assert [m["data"] for m in got if m["type"] == "message"] == [{"hi": 1}]
    finally:
        session.on_close()


async def test_an_unknown_remote_session_is_sent_then_dropped_on_its_node(
        make_hub: MakeHub, caplog: pytest.LogCaptureFixture) -> None:
    """B cannot know A's sessions without a round trip: it hands the command to Redis
    (SENT, 204); A drops it with a debug line. The client's stream was that session's,
    so it is gone and the client reconnects. An id A refuses is unknown on A at once."""
    a, b = await make_hub(), await make_hub()
    with caplog.at_level(logging.DEBUG, "pubsocket.hub"):
        assert await b.relay.route(a.relay.node, "gone", b"{}") is RouteResult.SENT
        await until(lambda: a.relay.stats.dropped == 1)
    assert "routed command for a session not on this node dropped" in caplog.messages
    assert await a.relay.route(a.relay.node, "gone", b"{}") is RouteResult.UNKNOWN_SESSION
    # A node that does not run: Redis handed the PUBLISH to nobody, so B says the
    # session is unknown (404: the client reconnects now, not at its command timeout).
    assert await b.relay.route("0" * 16, "s1", b"{}") is RouteResult.UNKNOWN_SESSION
    assert b.relay.stats.unreachable == 1 and b.relay.stats.sent == 1
    for bad_node in ("a b", "n", "0" * 15, "A" * 16, "$control"):  # never a node's id
        assert await b.relay.route(bad_node, "s1", b"{}") is RouteResult.UNKNOWN_SESSION
    assert await b.relay.route(a.relay.node, "a b", b"{}") is RouteResult.UNKNOWN_SESSION


async def test_a_node_costs_one_redis_subscription_and_no_keys(
        make_hub: MakeHub, redis_url: str) -> None:
    a = await make_hub()
    prefix = a.broker.prefix  # type: ignore[attr-defined]
    client = Redis.from_url(redis_url)
    try:
        channel = f"{prefix}$n:{a.relay.node}"
        assert await client.pubsub_numsub(channel) == [(channel.encode(), 1)]
        fed: list[bytes] = []
        a.relay.register("s1", fed.append)
        b = await make_hub()
        for i in range(10):
            await b.relay.route(a.relay.node, "s1", b"%d" % i)
        await until(lambda: len(fed) == 10)
        assert [k async for k in client.scan_iter(match=f"{prefix}*")] == []  # no history
    finally:
        await client.aclose()


async def test_routes_waiting_for_the_broker_are_bounded(make_hub: MakeHub) -> None:
    a, b = await make_hub(), await make_hub()
    fed: list[bytes] = []
    a.relay.register("s1", fed.append)
    b.relay.max_pending = 2
    results = await asyncio.gather(*(b.relay.route(a.relay.node, "s1", b"%d" % i)
                                     for i in range(5)))
    assert results == [RouteResult.SENT] * 2 + [RouteResult.UNAVAILABLE] * 3
    assert b.relay.stats.unavailable == 3
    await until(lambda: len(fed) == 2)
    assert fed == [b"0", b"1"]
    assert await b.relay.route(a.relay.node, "s1", b"5") is RouteResult.SENT  # room again


async def test_broker_outage_is_unavailable_then_routing_resumes(
        make_hub: MakeHub, server: RedisServer) -> None:  # noqa: F811
    """Redis down: B cannot hand the command over, so it says so (the HTTP layer's 503,
    the SDK reconnects) instead of losing it. Redis back: both nodes re-subscribe by
    themselves (A's node channel included) and routing works again."""
    await server.start()
    quick = {"backoff_policy": lambda: backoff(0.05, 2.0, 0.2), "confirm_timeout": 1.0}
    a = await make_hub(server.url, **quick)
    b = await make_hub(server.url, **quick)
    fed: list[bytes] = []
    a.relay.register("s1", fed.append)
    assert await b.relay.route(a.relay.node, "s1", b"before") is RouteResult.SENT
    await until(lambda: fed == [b"before"])
    await server.kill()
    await until(lambda: not b.broker.healthy)
    assert await b.relay.route(a.relay.node, "s1", b"during") is RouteResult.UNAVAILABLE
    await server.start()
    await until(lambda: a.broker.healthy and b.broker.healthy, timeout=10)

    async def routed() -> None:  # until A's channel is confirmed again (bounded)
        for i in range(200):
            await b.relay.route(a.relay.node, "s1", b"after %d" % i)
            if fed[-1:] == [b"after %d" % i]:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(routed(), 10)
    assert b"during" not in fed and fed[0] == b"before"
    assert a.relay.stats.fed_routed == len(fed)


async def test_a_closed_or_cut_owner_is_unknown_at_once_and_reachable_again(
        make_hub: MakeHub, server: RedisServer) -> None:  # noqa: F811
    """No node hears ``$n:A``: its process stopped (here its hub closed), or its own
    Redis link broke while B's holds. B's PUBLISH reaches nobody, so B answers
    UNKNOWN_SESSION (404) at once instead of SENT (204) for a lost command. Once A is
    back on Redis and re-subscribed, B routes to it again, in order."""
    await server.start()
    quick = {"backoff_policy": lambda: backoff(0.05, 0.2, 0.2), "confirm_timeout": 1.0}
    link = Link(server.port)
    await link.start()
    port = link.port
    a = await make_hub(f"redis://127.0.0.1:{port}/0?prefix=cut:", **quick)
    b = await make_hub(f"{server.url}?prefix=cut:", **quick)
    fed: list[bytes] = []
    a.relay.register("s1", fed.append)
    assert await b.relay.route(a.relay.node, "s1", b"before") is RouteResult.SENT
    await until(lambda: fed == [b"before"])

    await link.close()  # A's link cut: Redis sees A's connections close
    await until(lambda: not a.broker.healthy)
    started = asyncio.get_running_loop().time()
    assert await b.relay.route(a.relay.node, "s1", b"lost") is RouteResult.UNKNOWN_SESSION
    # One PUBLISH round trip (ms), with seconds of room for a loaded box; a wait still fails.
    assert asyncio.get_running_loop().time() - started < 2.5
    assert b.relay.stats.unreachable == 1 and b.broker.healthy

    link = Link(server.port, port)  # the link is back: A reconnects, re-subscribes
    await link.start()
    try:
        await until(lambda: a.broker.healthy, timeout=10)

        async def routed() -> None:  # until A's channel is confirmed again (bounded)
            for _ in range(200):
                if await b.relay.route(a.relay.node, "s1", b"after") is RouteResult.SENT:
                    return
                await asyncio.sleep(0.05)

        await asyncio.wait_for(routed(), 10)
        results = await asyncio.gather(*(b.relay.route(a.relay.node, "s1", b"%d" % i)
                                         for i in range(50)))
        assert set(results) == {RouteResult.SENT}
        await until(lambda: len(fed) == 52)
        assert fed == [b"before", b"after"] + [b"%d" % i for i in range(50)]

        await a.close()  # A stops: its subscriber connection closes with it
        assert await b.relay.route(a.relay.node, "s1", b"x") is RouteResult.UNKNOWN_SESSION
    finally:
        await link.close()


async def test_a_broker_that_cannot_count_hands_over_as_before(make_hub: MakeHub) -> None:
    """`publish_counted_nowait` returning None (a broker without receiver counts):
    the command is published the ordinary way and reported SENT."""
    a, b = await make_hub(), await make_hub()
    fed: list[bytes] = []
    a.relay.register("s1", fed.append)
    b.broker.publish_counted_nowait = lambda topic, payload: None  # type: ignore[method-assign]
    assert await b.relay.route(a.relay.node, "s1", b"x") is RouteResult.SENT
    assert await b.relay.route("0" * 16, "s1", b"y") is RouteResult.SENT  # cannot tell
    await until(lambda: fed == [b"x"])
    assert b.relay.stats.unreachable == 0
