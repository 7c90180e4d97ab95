"""`hub.cluster` across nodes: hubs in one process on one real Redis (each with its own
broker connections, as separate processes have). The registry behind `info`, its
bounds, a clean shutdown's `node_leave`, and the `channels` survey: merge, cap,
shared and refused surveys, forged or late messages ignored."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from pubsocket import Hub, Settings
from pubsocket.brokers.base import NO_HISTORY
from pubsocket.hub.cluster import REPLY_MARK, SurveyRefused
from pubsocket.hub.control import CONTROL_TOPIC
from pubsocket.hub.relay import NODE_PREFIX
from tests.brokers.hubs import MakeHub, RedisHubs, until
from tests.unit.test_ops import Sink


@pytest.fixture
def make_hub(redis_hubs: RedisHubs) -> MakeHub:
    """Started hubs on one fresh prefix of the test Redis (`settings` overrides)."""

    async def make(**settings: Any) -> Hub:
        return await redis_hubs.start(Settings(**{"cluster_info_interval": 5.0, **settings}))

    return make


LEAVE_BOUND = 7.5  # seconds: half the expiry (3 intervals of 5 s) of make_hub's hubs


async def subscribe(hub: Hub, topic: str, count: int) -> None:
    for _ in range(count):
        await hub.subscribe(Sink(), topic)


async def test_nodes_learn_each_other_at_once_and_forget_a_closed_one(
        make_hub: MakeHub) -> None:
    """With a 5 s interval: new nodes are listed within a round trip (a node that hears
    of a new one announces itself), and a closed one is gone as fast (node_leave)."""
    a, b, c = await make_hub(), await make_hub(), await make_hub()
    await subscribe(c, "room", 2)
    await until(lambda: all(len(h.cluster.nodes()) == 3 for h in (a, b, c)))
    assert a.cluster.nodes()[0].uid == a.relay.node  # this node first
    assert {n.uid for n in a.cluster.nodes()} == {h.relay.node for h in (a, b, c)}
    started = time.monotonic()
    await c.close()
    # Half the 15 s expiry: only node_leave forgets C this soon, and load adds seconds.
    await until(lambda: len(a.cluster.nodes()) == len(b.cluster.nodes()) == 2, LEAVE_BOUND)
    assert time.monotonic() - started < LEAVE_BOUND


async def test_the_registry_is_bounded_and_ignores_forged_infos(make_hub: MakeHub) -> None:
    a = await make_hub(cluster_max_nodes=1)
    b, c = await make_hub(), await make_hub()
    await until(lambda: len(b.cluster.nodes()) == 3)
    assert len(a.cluster.nodes()) == 2  # itself and one other
    for forged in ({"op": "node", "node": "x"}, {"op": "node", "node": "0" * 16},
                   {"op": "node", "node": "1" * 16, "name": "n", "clients": -1, "topics": 0,
                    "subs": 0, "users": 0, "uptime": 0},
                   {"op": "survey", "node": "2" * 16, "id": "1", "pattern": "", "cap": 1}):
        await b.publish_internal(CONTROL_TOPIC, orjson.dumps(forged))
    await b.publish_internal(CONTROL_TOPIC, b"not json")
    await asyncio.sleep(0.2)
    assert {n.uid for n in b.cluster.nodes()} == {h.relay.node for h in (a, b, c)}
    assert b.cluster.stats.answered == 0


async def test_channels_merges_every_node_busiest_first_within_the_cap(
        make_hub: MakeHub) -> None:
    a = await make_hub(server_api_channels_max=2)
    b, c = await make_hub(), await make_hub()
    await subscribe(a, "room:1", 1)
    await subscribe(b, "room:1", 2)
    await subscribe(b, "room:2", 2)
    await subscribe(c, "room:3", 1)
    await subscribe(c, "lobby", 5)
    await until(lambda: len(a.cluster.nodes()) == 3)
    found = await a.cluster.channels(None, 0)
    assert (found.channels, found.nodes, found.complete) == (
        {"lobby": 5, "room:1": 3, "room:2": 2, "room:3": 1}, 3, True)
    assert list(found.channels) == ["lobby", "room:1", "room:2", "room:3"]
    assert (await a.cluster.channels("room:*", 2)).channels == {"room:1": 3, "room:2": 2}
    # B answers at most its own server_api_channels_max (10,000 here) and A's cap
    assert (await b.cluster.channels("room:[13]", 0)).channels == {"room:1": 3,
                                                                   "room:3": 1}


async def test_surveys_are_shared_then_refused_past_the_rate(make_hub: MakeHub) -> None:
    a = await make_hub(cluster_survey_rate=2)
    b = await make_hub()
    await subscribe(b, "room", 1)
    await until(lambda: len(a.cluster.nodes()) == 2)
    same = await asyncio.gather(*(a.cluster.channels("r*", 0) for _ in range(5)))
    assert {tuple(s.channels.items()) for s in same} == {(("room", 1),)}
    assert (a.cluster.stats.surveys, a.cluster.stats.shared) == (1, 4)
    await a.cluster.channels("x*", 0)  # the second of this second
    with pytest.raises(SurveyRefused):
        await a.cluster.channels("y*", 0)
    assert a.cluster.stats.refused == 1 and b.cluster.stats.answered == 2
    await asyncio.sleep(1.0)  # a new second
    assert (await a.cluster.channels("y*", 0)).complete


async def test_forged_and_late_replies_are_ignored(make_hub: MakeHub) -> None:
    a, b = await make_hub(), await make_hub()
    await subscribe(b, "room", 1)
    await until(lambda: len(a.cluster.nodes()) == 2)
    topic = NODE_PREFIX + a.relay.node
    for junk in (b"{", b"[]", orjson.dumps({"id": 99, "node": "n", "channels": [["x", 1]]}),
                 orjson.dumps({"id": 1, "node": 5, "channels": "x"})):
        await b.broker.publish(topic, REPLY_MARK + junk, NO_HISTORY)
    await asyncio.sleep(0.1)
    found = await a.cluster.channels(None, 0)
    assert found.channels == {"room": 1} and found.complete
    assert a.relay.stats.dropped == 0  # never taken for routed commands


async def test_a_foreign_pattern_subscriber_does_not_stall_the_survey(
        make_hub: MakeHub, redis_url: str) -> None:
    """A monitoring ``PSUBSCRIBE *`` counts as a receiver of every survey request but
    never answers: the registry says when every node did."""
    monitor = Redis.from_url(redis_url)
    pubsub = monitor.pubsub()
    await pubsub.psubscribe("*")
    try:
        a = await make_hub(cluster_survey_timeout=5.0)
        started = time.monotonic()
        assert (await a.cluster.channels(None, 0)).complete  # alone: no request at all
        waited = time.monotonic() - started
        b = await make_hub()
        await subscribe(b, "room", 1)
        await until(lambda: len(a.cluster.nodes()) == 2)
        started = time.monotonic()
        found = await a.cluster.channels(None, 0)
        waited += time.monotonic() - started
        assert (found.channels, found.complete) == ({"room": 1}, True)
        # The surveys alone, against half the 5 s timeout a wait for the monitor takes:
        # load adds seconds, not the timeout.
        assert waited < 2.5, waited
    finally:
        await pubsub.aclose()
        await monitor.aclose()
