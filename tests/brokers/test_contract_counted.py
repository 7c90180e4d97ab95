"""`Broker.publish_counted_nowait`, run against memory and a real Redis: a publish
without history delivered like any other, which also says how many nodes received it
(the command relay's "nobody received it", hub/relay.py)."""

from __future__ import annotations

import asyncio

from pubsocket.brokers import Broker
from pubsocket.brokers.base import NO_HISTORY, Publication

from .conftest import MakeNode, Node


async def counted(broker: Broker, topic: str, payload: bytes) -> int:
    result = broker.publish_counted_nowait(topic, payload)
    assert result is not None  # both brokers count
    return result if isinstance(result, int) else await result


async def test_counts_the_nodes_that_received_it(make_node: MakeNode) -> None:
    a = await make_node()
    assert await counted(a.broker, "t", b"nobody") == 0
    await a.broker.subscribe("t")
    assert await counted(a.broker, "t", b"1") == 1
    assert await a.wait_for(1) == [("t", b"1")]
    assert a.publications[0][1] == Publication(0, "", b"1")  # as a publish without history
    if a.broker.shared:  # a second node on the same engine counts too
        b = await make_node()
        await b.broker.subscribe("t")
        assert await counted(a.broker, "t", b"2") == 2
        assert await b.wait_for(1) == [("t", b"2")]
        await b.broker.close()  # a node gone: no longer counted
        assert await counted(a.broker, "t", b"3") == 1
    await a.broker.unsubscribe("t")
    assert await counted(a.broker, "t", b"gone") == 0
    want = [b"1", b"2", b"3"] if a.broker.shared else [b"1"]
    assert await a.settle() == [("t", payload) for payload in want]


async def test_keeps_publish_order_with_ordinary_publishes(node: Node, broker: Broker) -> None:
    """Queued at call time on the same path: interleaved with `publish_nowait`, without
    awaiting in between, everything arrives in call order."""
    await broker.subscribe("t")
    counts: list[int | asyncio.Future[int]] = []
    published: list[asyncio.Future[Publication]] = []
    for i in range(200):
        if i % 2:
            count = broker.publish_counted_nowait("t", b"%d" % i)
            assert count is not None
            counts.append(count)
        else:
            pub = broker.publish_nowait("t", b"%d" % i, NO_HISTORY)
            if isinstance(pub, asyncio.Future):
                published.append(pub)
    await asyncio.gather(*published)
    assert [c if isinstance(c, int) else await c for c in counts] == [1] * 100
    received = await node.wait_for(200)
    assert received == [("t", b"%d" % i) for i in range(200)]
