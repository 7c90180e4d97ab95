"""Idempotent publishes (`Broker.publish(..., idempotency_key=...)`), on memory and Redis:
a repeated key publishes, delivers and keeps nothing and answers the first position."""

from __future__ import annotations

import asyncio

from pubsocket.brokers.base import NO_HISTORY

from .conftest import HISTORY, MakeNode, Node


async def test_a_repeated_key_returns_the_first_position_and_delivers_once(
    node: Node,
) -> None:
    broker = node.broker
    await broker.subscribe("a")
    first = await broker.publish("a", b"1", HISTORY, idempotency_key="k1")
    again = await broker.publish("a", b"1", HISTORY, idempotency_key="k1")
    other = await broker.publish("a", b"2", HISTORY, idempotency_key="k2")
    plain = await broker.publish("a", b"3", HISTORY)
    assert (first.offset, again.offset, other.offset, plain.offset) == (1, 1, 2, 3)
    assert again.epoch == first.epoch
    assert await node.wait_for(3) == [("a", b"1"), ("a", b"2"), ("a", b"3")]
    assert await node.settle() == [("a", b"1"), ("a", b"2"), ("a", b"3")]
    page = await broker.history("a", None, 10)
    assert [p.payload for p in page.publications] == [b"1", b"2", b"3"]


async def test_keys_are_scoped_to_their_topic(node: Node) -> None:
    broker = node.broker
    await broker.subscribe("a")
    await broker.subscribe("b")
    on_a = await broker.publish("a", b"x", HISTORY, idempotency_key="same")
    on_b = await broker.publish("b", b"y", HISTORY, idempotency_key="same")
    assert (on_a.offset, on_b.offset) == (1, 1)
    assert sorted(await node.wait_for(2)) == [("a", b"x"), ("b", b"y")]


async def test_without_history_a_repeated_key_is_dropped_with_offset_zero(node: Node) -> None:
    broker = node.broker
    await broker.subscribe("n")
    results = [await broker.publish("n", b"%d" % (i // 2), NO_HISTORY,
                                    idempotency_key=f"k{i // 2}") for i in range(6)]
    assert {(r.offset, r.epoch) for r in results} == {(0, "")}
    assert await node.wait_for(3) == [("n", b"0"), ("n", b"1"), ("n", b"2")]
    assert await node.settle() == [("n", b"0"), ("n", b"1"), ("n", b"2")]


async def test_keys_expire_after_the_ttl(make_node: MakeNode) -> None:
    node = await make_node(idempotency_ttl=0.2)
    broker = node.broker
    await broker.subscribe("a")
    assert (await broker.publish("a", b"x", HISTORY, idempotency_key="k")).offset == 1
    assert (await broker.publish("a", b"x", HISTORY, idempotency_key="k")).offset == 1
    await asyncio.sleep(0.3)
    assert (await broker.publish("a", b"x", HISTORY, idempotency_key="k")).offset == 2
    assert await node.wait_for(2) == [("a", b"x"), ("a", b"x")]


async def test_two_nodes_share_the_keys(make_node: MakeNode) -> None:
    one, two = await make_node(), await make_node()
    await one.broker.subscribe("a")
    pubs = await asyncio.gather(*(node.broker.publish("a", b"once", HISTORY, idempotency_key="k")
                                  for node in (one, two, one, two)))
    if not one.broker.shared:  # two memory brokers are two separate worlds
        return
    assert {(p.offset, p.epoch) for p in pubs} == {(1, pubs[0].epoch)}
    assert await one.wait_for(1) == [("a", b"once")]
    assert await one.settle() == [("a", b"once")]
