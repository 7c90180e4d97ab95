"""The `Broker` contract, one body per rule, run against memory and a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from pubsocket.brokers import Broker, MemoryBroker
from pubsocket.brokers.base import NO_HISTORY, HistoryPolicy, Position, Publication, Publisher
from pubsocket.brokers.redis import RedisBroker

from .conftest import HISTORY, MakeNode, Node, delete_keys, publish_all


async def test_delivers_only_subscribed_topics(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    await broker.publish("b", b"not for us", HISTORY)
    await broker.publish("a", b"1", HISTORY)
    assert await node.wait_for(1) == [("a", b"1")]
    assert await node.settle() == [("a", b"1")]


async def test_publish_right_after_subscribe_is_never_missed(node: Node, broker: Broker) -> None:
    for i in range(50):
        await broker.subscribe(f"t{i}")
        await broker.publish(f"t{i}", b"%d" % i, HISTORY)
    received = await node.wait_for(50)
    assert received == [(f"t{i}", b"%d" % i) for i in range(50)]


async def test_unsubscribe_stops_delivery(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    await broker.publish("a", b"before", HISTORY)
    await node.wait_for(1)
    await broker.unsubscribe("a")
    await broker.publish("a", b"after", HISTORY)
    assert await node.settle() == [("a", b"before")]


async def test_unsubscribe_of_unknown_topic_is_a_no_op(broker: Broker) -> None:
    await broker.unsubscribe("never-subscribed")


async def test_quick_unsubscribe_resubscribe_keeps_receiving(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    for i in range(20):
        await broker.unsubscribe("a")
        await broker.subscribe("a")
        await broker.publish("a", b"%d" % i, HISTORY)
        await node.wait_for(i + 1)  # an in-flight message may be dropped by unsubscribe
    assert node.received == [("a", b"%d" % i) for i in range(20)]
    assert await node.settle() == node.received  # no duplicates from the churn


async def test_concurrent_unsubscribe_resubscribe_ends_subscribed(
    node: Node, broker: Broker
) -> None:
    # Issued without awaiting in between: the calls must reach the engine in call order.
    await broker.subscribe("a")
    await asyncio.gather(broker.unsubscribe("a"), broker.subscribe("a"))
    await broker.publish("a", b"x", HISTORY)
    assert await node.wait_for(1) == [("a", b"x")]


async def test_per_topic_order_of_1000_messages(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    await broker.subscribe("b")
    for i in range(1000):
        await broker.publish("a" if i % 2 else "b", b"%d" % i, HISTORY)
    received = await node.wait_for(1000)
    for topic, parity in (("a", 1), ("b", 0)):
        got = [int(payload) for t, payload in received if t == topic]
        assert got == [i for i in range(1000) if i % 2 == parity]


async def test_payload_bytes_arrive_identical(node: Node, broker: Broker) -> None:
    payloads = [
        b"",
        "h\u00e9llo \u2603 \U0001f600 \u4e2d\u6587".encode(),
        bytes(range(256)) * 4,  # every byte value, NUL and CR LF included
        b"\r\n$3\r\nfoo\r\n*1\r\n",  # looks like RESP
        bytes((i * 7919) % 251 for i in range(1 << 20)),  # ~1 MiB
    ]
    await broker.subscribe("bin")
    for payload in payloads:
        await broker.publish("bin", payload, HISTORY)
    received = await node.wait_for(len(payloads))
    assert [p for _, p in received] == payloads


async def test_non_ascii_topic(node: Node, broker: Broker) -> None:
    await broker.subscribe("caf\u00e9/\u2603")
    await broker.publish("caf\u00e9/\u2603", b"1", HISTORY)
    assert await node.wait_for(1) == [("caf\u00e9/\u2603", b"1")]


async def test_close_is_idempotent(make_node: MakeNode) -> None:
    node = await make_node()
    await node.broker.subscribe("a")
    await node.broker.close()
    await node.broker.close()  # and once more by the fixture


async def test_nodes_receive_each_other_only_for_their_topics(make_node: MakeNode) -> None:
    one, two = await make_node(), await make_node()
    if not one.broker.shared:
        # Memory is one process: two MemoryBrokers are two separate worlds, by design.
        assert isinstance(one.broker, MemoryBroker)
        return
    await one.broker.subscribe("a")
    await two.broker.subscribe("b")
    await one.broker.publish("b", b"one->b", HISTORY)
    await two.broker.publish("a", b"two->a", HISTORY)
    await one.broker.publish("a", b"one->a", HISTORY)
    await two.broker.publish("b", b"two->b", HISTORY)
    assert await one.wait_for(2) == [("a", b"two->a"), ("a", b"one->a")]
    assert await two.wait_for(2) == [("b", b"one->b"), ("b", b"two->b")]
    assert len(await one.settle()) == 2
    assert len(two.received) == 2


async def test_no_firehose_other_topics_never_arrive(make_node: MakeNode) -> None:
    # Delivery-level check for every broker; test_redis_faults.py checks the wire too.
    listener, talker = await make_node(), await make_node()
    await listener.broker.subscribe("A")
    await talker.broker.subscribe("B")
    for i in range(100):
        await talker.broker.publish("B", b"%d" % i, HISTORY)
    await listener.broker.publish("A", b"end", HISTORY)
    assert await listener.wait_for(1) == [("A", b"end")]
    await talker.wait_for(100 if talker.broker.shared else 0)
    assert await listener.settle() == [("A", b"end")]


# -- positions and history ------------------------------------------------------------
async def lose_history(make_node: MakeNode, node: Node) -> None:
    """Make the engine lose every topic's records: Redis keys deleted, memory evicted."""
    broker = node.broker
    if isinstance(broker, RedisBroker):
        assert await delete_keys(broker.redis_url, broker.prefix) > 0
    else:
        assert isinstance(broker, MemoryBroker)
        # Over the byte cap: the least recently published topics are dropped first.
        for i in range(50):
            await broker.publish(f"filler-{i}", b"x" * 4096, HISTORY)


async def test_offsets_are_contiguous_from_one(broker: Broker) -> None:
    pubs = [await broker.publish("a", b"%d" % i, HISTORY) for i in range(10)]
    assert [p.offset for p in pubs] == list(range(1, 11))
    assert len({p.epoch for p in pubs}) == 1 and pubs[0].epoch != ""
    assert [p.payload for p in pubs] == [b"%d" % i for i in range(10)]
    other = await broker.publish("b", b"x", HISTORY)
    assert other.offset == 1  # offsets are per topic


async def test_offsets_unique_across_concurrent_publishers(make_node: MakeNode) -> None:
    one = await make_node()
    two = await make_node() if one.broker.shared else one  # memory: one process, one node
    results = await asyncio.gather(
        *(n.broker.publish("t", b"%d" % i, HISTORY) for i in range(200) for n in (one, two))
    )
    assert sorted(p.offset for p in results) == list(range(1, 401))
    assert len({p.epoch for p in results}) == 1


async def test_history_since_limit_and_order(broker: Broker) -> None:
    pubs = await publish_all(broker, "h", [b"%d" % i for i in range(10)])
    epoch = pubs[0].epoch
    page = await broker.history("h", None, 100)
    assert page.publications == pubs and page.position == Position(10, epoch)
    page = await broker.history("h", 4, 3)
    assert [p.offset for p in page.publications] == [5, 6, 7]
    assert [p.payload for p in page.publications] == [b"4", b"5", b"6"]
    assert page.position == Position(10, epoch)
    assert (await broker.history("h", 10, 100)).publications == []
    assert [p.offset for p in (await broker.history("h", 0, 2)).publications] == [1, 2]


async def test_position_only_history(broker: Broker) -> None:
    pubs = await publish_all(broker, "p", [b"1", b"2", b"3"])
    page = await broker.history("p", 0, 0)
    assert page.publications == [] and page.position == Position(3, pubs[0].epoch)


async def test_epoch_created_by_a_history_read_is_kept_by_the_next_publish(
    broker: Broker,
) -> None:
    page = await broker.history("fresh", None, 10)
    assert page.publications == [] and page.position.offset == 0 and page.position.epoch
    assert (await broker.history("fresh", 0, 10)).position == page.position  # stable
    pub = await broker.publish("fresh", b"first", HISTORY)
    assert (pub.offset, pub.epoch) == (1, page.position.epoch)


async def test_history_keeps_at_most_size(broker: Broker) -> None:
    small = HistoryPolicy(size=5, ttl=60.0)
    pubs = await publish_all(broker, "s", [b"%d" % i for i in range(12)], small)
    page = await broker.history("s", None, 100)
    assert [p.offset for p in page.publications] == [8, 9, 10, 11, 12]
    assert page.publications == pubs[7:] and page.position == Position(12, pubs[0].epoch)


async def test_history_keeps_at_most_the_topic_byte_cap(make_node: MakeNode) -> None:
    """Finding 3: a topic's history is capped in bytes as well as in count, oldest
    dropped first; the position goes on in the same epoch, and a reader asking from a
    dropped offset sees where the history starts (recovery: recovered false)."""
    broker = (await make_node(topic_max_bytes=35_000)).broker
    payloads = [b"%05d" % i + b"x" * 9_995 for i in range(10)]  # 10,000 bytes each
    pubs = await publish_all(broker, "big", payloads)
    page = await broker.history("big", None, 100)
    assert [p.offset for p in page.publications] == [8, 9, 10]
    assert page.publications == pubs[7:] and page.position == Position(10, pubs[0].epoch)
    page = await broker.history("big", 2, 100)  # offsets 3..7 are gone: a hole to see
    assert [p.offset for p in page.publications] == [8, 9, 10]
    small = HistoryPolicy(size=2, ttl=60.0)  # the count still applies under the cap
    await publish_all(broker, "big", [b"s"] * 3, small)
    assert [p.offset for p in (await broker.history("big", None, 100)).publications] == [
        12, 13]


async def test_the_newest_publication_is_kept_whatever_its_size(make_node: MakeNode) -> None:
    broker = (await make_node(topic_max_bytes=1_000)).broker
    await broker.publish("huge", b"a" * 100, HISTORY)
    last = await broker.publish("huge", b"b" * 5_000, HISTORY)
    assert (await broker.history("huge", None, 100)).publications == [last]
    after = await broker.publish("huge", b"c" * 100, HISTORY)
    assert (await broker.history("huge", None, 100)).publications == [after]


async def test_byte_cap_and_count_trimming_together_stay_contiguous(
    make_node: MakeNode,
) -> None:
    """Many small publications: count trimming (approximate on Redis) and the byte cap
    both drop from the oldest end; what is kept is contiguous up to the newest and
    within the cap, with a publisher counted too."""
    cap = 20_000
    broker = (await make_node(topic_max_bytes=cap)).broker
    who = Publisher("c1", "u1", b'{"n":"' + b"i" * 50 + b'"}')
    for start in range(0, 600, 100):
        await publish_all(broker, "many", [b"m" * 200] * 100, HISTORY, who)
        page = await broker.history("many", None, 1000)
        offsets = [p.offset for p in page.publications]
        assert offsets == list(range(offsets[0], start + 101)), offsets
        kept = sum(len(p.payload) + len(p.publisher.info) for p in page.publications
                   if p.publisher is not None)
        assert 8 <= len(offsets) <= 100 and kept <= cap


async def test_mixed_sizes_stay_within_the_byte_cap(make_node: MakeNode) -> None:
    """Small publications (Redis leaves those under cap / (8 * (size + 100)) bytes
    uncounted: their count bounds them) among large ones: still at most the cap."""
    cap, deep = 200_000, HistoryPolicy(size=300, ttl=60.0)  # Redis: 60 B are not counted
    broker = (await make_node(topic_max_bytes=cap)).broker
    for round_ in range(6):
        payloads = [b"s" * 60] * 20 + [b"L" * 9_000] * 5 + [b"m" * 99] * 20
        await publish_all(broker, "mixed", payloads, deep)
        page = await broker.history("mixed", None, 1000)
        offsets = [p.offset for p in page.publications]
        assert offsets == list(range(offsets[0], 45 * (round_ + 1) + 1))
        assert sum(len(p.payload) for p in page.publications) <= cap
    assert 150 <= len(offsets) < 270  # the cap, not the count, dropped the oldest


async def test_history_expires_after_ttl_but_the_position_stays(broker: Broker) -> None:
    brief = HistoryPolicy(size=10, ttl=0.3)
    pubs = await publish_all(broker, "ttl", [b"1", b"2", b"3"], brief)
    assert len((await broker.history("ttl", None, 10)).publications) == 3
    async with asyncio.timeout(3):
        while (page := await broker.history("ttl", None, 10)).publications:
            await asyncio.sleep(0.05)
    assert page.position == Position(3, pubs[0].epoch)  # meta outlives the history
    nxt = await broker.publish("ttl", b"4", brief)
    assert (nxt.offset, nxt.epoch) == (4, pubs[0].epoch)
    assert [p.offset for p in (await broker.history("ttl", None, 10)).publications] == [4]


async def test_no_history_policy_assigns_no_position_and_keeps_nothing(
    node: Node, broker: Broker
) -> None:
    await broker.subscribe("n")
    pubs = await publish_all(broker, "n", [b"a", b"b"], NO_HISTORY)
    assert [(p.offset, p.epoch) for p in pubs] == [(0, ""), (0, "")]
    await node.wait_for(2)
    assert [(p.offset, p.epoch, p.payload) for _, p in node.publications] == [
        (0, "", b"a"), (0, "", b"b"),
    ]
    if isinstance(broker, RedisBroker):
        from redis.asyncio import Redis

        client = Redis.from_url(broker.redis_url)
        try:
            assert [k async for k in client.scan_iter(match=f"{broker.prefix}*")] == []
        finally:
            await client.aclose()
    else:
        assert isinstance(broker, MemoryBroker)
        assert (broker.topic_records, broker.kept_bytes) == (0, 0)


async def test_epoch_changes_when_the_history_is_lost(make_node: MakeNode) -> None:
    node = await make_node()
    if isinstance(node.broker, MemoryBroker):
        node = await make_node(max_bytes=64 * 1024)  # a cap the fillers can exceed
    broker = node.broker
    before = await publish_all(broker, "lost", [b"1", b"2", b"3"])
    await lose_history(make_node, node)
    after = await broker.publish("lost", b"again", HISTORY)
    assert after.offset == 1 and after.epoch not in ("", before[0].epoch)
    page = await broker.history("lost", None, 10)
    assert page.publications == [after] and page.position == Position(1, after.epoch)


async def test_deliveries_carry_offset_and_epoch(node: Node, broker: Broker) -> None:
    await broker.subscribe("d")
    pubs = await publish_all(broker, "d", [b"x", b"y", b"z"])
    await node.wait_for(3)
    assert node.publications == [("d", p) for p in pubs]


async def test_pipelined_publish_nowait_keeps_call_order(node: Node, broker: Broker) -> None:
    await broker.subscribe("o")
    payloads = [b"%d" % i for i in range(500)]
    pubs = await publish_all(broker, "o", payloads)
    assert [p.offset for p in pubs] == list(range(1, 501))
    assert [p.payload for p in pubs] == payloads
    await node.wait_for(500)
    assert [p for _, p in node.publications] == pubs


@pytest.mark.parametrize("limit", [1, 3])
async def test_history_limit_is_counted_from_since(broker: Broker, limit: int) -> None:
    await publish_all(broker, "l", [b"%d" % i for i in range(6)])
    page = await broker.history("l", 2, limit)
    assert [p.offset for p in page.publications] == list(range(3, 3 + limit))


ALICE = Publisher("c-1", "alice", b'{"name":"Alice","n":[1,2]}')
BOB = Publisher("c-2", None)  # anonymous, no info


@pytest.mark.parametrize("policy", [HISTORY, NO_HISTORY], ids=["history", "no-history"])
async def test_publisher_travels_with_live_delivery(
    make_node: MakeNode, policy: HistoryPolicy
) -> None:
    listener = await make_node()
    talker = await make_node() if listener.broker.shared else listener
    await listener.broker.subscribe("who")
    sent = [
        await talker.broker.publish("who", b'{"x":1}', policy, ALICE),
        await talker.broker.publish("who", b'"~not a frame"', policy, BOB),
        await talker.broker.publish("who", b"[]", policy),
    ]
    assert [p.publisher for p in sent] == [ALICE, BOB, None]
    await listener.wait_for(3)
    got = [p for _, p in listener.publications]
    assert [p.publisher for p in got] == [ALICE, BOB, None]
    assert [p.payload for p in got] == [b'{"x":1}', b'"~not a frame"', b"[]"]
    assert [p.offset for p in got] == [p.offset for p in sent]


async def test_publisher_is_kept_in_history(make_node: MakeNode) -> None:
    talker = await make_node()
    reader = await make_node() if talker.broker.shared else talker
    futures = [talker.broker.publish_nowait("kept", b"1", HISTORY, ALICE),
               talker.broker.publish_nowait("kept", b"2", HISTORY),
               talker.broker.publish_nowait("kept", b"3", HISTORY, BOB)]
    for f in futures:
        if f is not None and not isinstance(f, Publication):
            await f
    page = await reader.broker.history("kept", None, 10)
    assert [(p.offset, p.payload, p.publisher) for p in page.publications] == [
        (1, b"1", ALICE), (2, b"2", None), (3, b"3", BOB)]
    page = await reader.broker.history("kept", 2, 10)
    assert [p.publisher for p in page.publications] == [BOB]
