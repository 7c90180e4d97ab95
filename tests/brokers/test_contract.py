"""The `Broker` contract, one body per rule, run against memory and a real Redis."""

from __future__ import annotations

import asyncio

from pubsocket.brokers import Broker, MemoryBroker

from .conftest import MakeNode, Node


async def test_delivers_only_subscribed_topics(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    await broker.publish("b", b"not for us")
    await broker.publish("a", b"1")
    assert await node.wait_for(1) == [("a", b"1")]
    assert await node.settle() == [("a", b"1")]


async def test_publish_right_after_subscribe_is_never_missed(node: Node, broker: Broker) -> None:
    for i in range(50):
        await broker.subscribe(f"t{i}")
        await broker.publish(f"t{i}", b"%d" % i)
    received = await node.wait_for(50)
    assert received == [(f"t{i}", b"%d" % i) for i in range(50)]


async def test_unsubscribe_stops_delivery(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    await broker.publish("a", b"before")
    await node.wait_for(1)
    await broker.unsubscribe("a")
    await broker.publish("a", b"after")
    assert await node.settle() == [("a", b"before")]


async def test_unsubscribe_of_unknown_topic_is_a_no_op(broker: Broker) -> None:
    await broker.unsubscribe("never-subscribed")


async def test_quick_unsubscribe_resubscribe_keeps_receiving(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    for i in range(20):
        await broker.unsubscribe("a")
        await broker.subscribe("a")
        await broker.publish("a", b"%d" % i)
        await node.wait_for(i + 1)  # an in-flight message may be dropped by unsubscribe
    assert node.received == [("a", b"%d" % i) for i in range(20)]
    assert await node.settle() == node.received  # no duplicates from the churn


async def test_concurrent_unsubscribe_resubscribe_ends_subscribed(
    node: Node, broker: Broker
) -> None:
    # Issued without awaiting in between: the calls must reach the engine in call order.
    await broker.subscribe("a")
    await asyncio.gather(broker.unsubscribe("a"), broker.subscribe("a"))
    await broker.publish("a", b"x")
    assert await node.wait_for(1) == [("a", b"x")]


async def test_per_topic_order_of_1000_messages(node: Node, broker: Broker) -> None:
    await broker.subscribe("a")
    await broker.subscribe("b")
    for i in range(1000):
        await broker.publish("a" if i % 2 else "b", b"%d" % i)
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
        await broker.publish("bin", payload)
    received = await node.wait_for(len(payloads))
    assert [p for _, p in received] == payloads


async def test_non_ascii_topic(node: Node, broker: Broker) -> None:
    await broker.subscribe("caf\u00e9/\u2603")
    await broker.publish("caf\u00e9/\u2603", b"1")
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
    await one.broker.publish("b", b"one->b")
    await two.broker.publish("a", b"two->a")
    await one.broker.publish("a", b"one->a")
    await two.broker.publish("b", b"two->b")
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
        await talker.broker.publish("B", b"%d" % i)
    await listener.broker.publish("A", b"end")
    assert await listener.wait_for(1) == [("A", b"end")]
    await talker.wait_for(100 if talker.broker.shared else 0)
    assert await listener.settle() == [("A", b"end")]
