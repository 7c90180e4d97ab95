"""`Broker.remove_history` (Centrifugo's ``history_remove``), on memory and a real Redis:
the kept publications go, the position (top offset, epoch) stays."""

from __future__ import annotations

from pubsocket.brokers import Broker
from pubsocket.brokers.base import Position

from .conftest import HISTORY, MakeNode


async def test_removal_keeps_the_position_and_the_next_offset(broker: Broker) -> None:
    pubs = [await broker.publish("r", b"%d" % i, HISTORY) for i in range(3)]
    await broker.remove_history("r")
    page = await broker.history("r", None, 100)
    assert page.publications == [] and page.position == Position(3, pubs[0].epoch)
    after = await broker.publish("r", b"next", HISTORY)
    assert (after.offset, after.epoch) == (4, pubs[0].epoch)
    page = await broker.history("r", 3, 100)
    assert [p.payload for p in page.publications] == [b"next"]


async def test_removal_of_an_unknown_topic_is_a_no_op(broker: Broker) -> None:
    await broker.remove_history("never-published")
    page = await broker.history("never-published", None, 10)
    assert page.publications == [] and page.position.offset == 0


async def test_the_byte_cap_counts_only_what_is_kept_after_a_removal(
        make_node: MakeNode) -> None:
    """Removed bytes no longer count: after a removal the cap keeps as much as before."""
    broker = (await make_node(topic_max_bytes=35_000)).broker
    for i in range(3):
        await broker.publish("big", b"%05d" % i + b"x" * 9_995, HISTORY)
    await broker.remove_history("big")
    for i in range(3):
        await broker.publish("big", b"%05d" % i + b"y" * 9_995, HISTORY)
    page = await broker.history("big", None, 100)
    assert [p.offset for p in page.publications] == [4, 5, 6]
