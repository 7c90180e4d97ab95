"""The `Broker` contract for bounded history reads (``max_bytes``), on memory and Redis.

A read stops before the publication that would take the page past `max_bytes` (payload
plus publisher), yet a non-empty page always holds its first publication, so a reader
paging with `since` always makes progress. The Redis broker stops inside its script.
"""

from __future__ import annotations

from pubsocket.brokers import Broker
from pubsocket.brokers.base import Position, Publisher

from .conftest import publish_all


async def test_a_read_stops_before_the_byte_cap(broker: Broker) -> None:
    pubs = await publish_all(broker, "b", [b'"%s"' % (b"x" * 98) for _ in range(10)])  # 100 B
    page = await broker.history("b", None, 100, 350)
    assert [p.offset for p in page.publications] == [1, 2, 3]
    assert page.position == Position(10, pubs[0].epoch)  # the position is the topic's
    page = await broker.history("b", None, 100, 300)  # exactly at the cap: included
    assert [p.offset for p in page.publications] == [1, 2, 3]
    page = await broker.history("b", 3, 100, 350)  # the client continues with since
    assert [p.offset for p in page.publications] == [4, 5, 6]
    page = await broker.history("b", 3, 2, 350)  # the count still applies
    assert [p.offset for p in page.publications] == [4, 5]
    assert len((await broker.history("b", None, 100, 0)).publications) == 10  # 0: no cap


async def test_the_first_publication_always_comes_even_over_the_cap(broker: Broker) -> None:
    await publish_all(broker, "f", [b'"%s"' % (b"x" * 1000), b"1", b"2"])
    page = await broker.history("f", None, 100, 10)
    assert [p.offset for p in page.publications] == [1]
    page = await broker.history("f", 1, 100, 10)
    assert [p.offset for p in page.publications] == [2, 3]


async def test_the_publisher_counts_towards_the_cap(broker: Broker) -> None:
    who = Publisher("c1", "alice", b'{"bio":"%s"}' % (b"y" * 200))
    await publish_all(broker, "w", [b'"%s"' % (b"x" * 98) for _ in range(5)], publisher=who)
    page = await broker.history("w", None, 100, 350)  # 100 B of payload + ~210 of info
    assert [p.offset for p in page.publications] == [1]
    assert page.publications[0].publisher == who


async def test_many_small_entries_are_read_across_pages(broker: Broker) -> None:
    # The Redis script reads 1, 2, 4, ... 32 entries at a time: 55 entries cross pages.
    await publish_all(broker, "s", [b"%05d" % i for i in range(100)])
    page = await broker.history("s", None, 100, 55 * 5)
    assert [p.offset for p in page.publications] == list(range(1, 56))
    assert [p.payload for p in page.publications[-2:]] == [b"00053", b"00054"]
    page = await broker.history("s", 90, 100, 55 * 5)
    assert [p.offset for p in page.publications] == list(range(91, 101))
