"""MemoryBroker beyond the contract: the byte cap, meta expiry and flat memory."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable

import pytest

from pubsocket.brokers import MemoryBroker
from pubsocket.brokers.base import HistoryPolicy, Publisher
from pubsocket.brokers.memory import ENTRY_COST, RING_COST, record_cost

POLICY = HistoryPolicy(size=10, ttl=60.0)
MiB = 1024 * 1024


def kept(topic: str) -> int:
    """What a record keeping history counts, before its publications."""
    return record_cost(topic) + RING_COST


def test_byte_cap_drops_least_recently_published_topics_first() -> None:
    cap = 3 * (kept("a") + 2 * (ENTRY_COST + 100))
    broker = MemoryBroker(max_bytes=cap)
    payload = b"x" * 100
    epochs = {t: broker.publish_nowait(t, payload, POLICY).epoch for t in ("a", "b", "c")}
    broker.publish_nowait("a", payload, POLICY)  # now b is the least recently published
    broker.publish_nowait("c", payload, POLICY)
    assert broker.evicted_topics == 0 and broker.topic_records == 3
    broker.publish_nowait("d", payload, POLICY)  # over the cap
    assert broker.evicted_topics == 1 and broker.kept_bytes <= cap
    assert broker.history_nowait("a", None, 10).position.epoch == epochs["a"]
    assert broker.history_nowait("c", None, 10).position.epoch == epochs["c"]
    page = broker.history_nowait("b", None, 10)  # evicted: a new epoch, nothing kept
    assert page.publications == [] and page.position.offset == 0
    assert page.position.epoch != epochs["b"]


def test_a_single_topic_over_the_cap_keeps_its_newest_publication() -> None:
    cap = kept("big") + 1000
    broker = MemoryBroker(max_bytes=cap)
    pubs = [broker.publish_nowait("big", b"y" * 400, POLICY) for _ in range(5)]
    page = broker.history_nowait("big", None, 10)
    assert page.publications[-1] == pubs[-1] and len(page.publications) <= 2
    assert page.position.offset == 5 and broker.kept_bytes <= cap


def test_meta_lives_meta_ttl_after_the_last_publish_or_read() -> None:
    broker = MemoryBroker(meta_ttl=0.2)
    epoch = broker.publish_nowait("m", b"1", POLICY).epoch
    for _ in range(4):  # reads keep the position alive past meta_ttl
        time.sleep(0.1)
        assert broker.history_nowait("m", 0, 0).position.epoch == epoch
    time.sleep(0.3)
    pub = broker.publish_nowait("m", b"2", POLICY)
    assert pub.offset == 1 and pub.epoch != epoch


def test_sweep_frees_records_nobody_touches() -> None:
    broker = MemoryBroker(meta_ttl=0.5)
    brief = HistoryPolicy(size=5, ttl=0.1)
    for i in range(3000):
        broker.publish_nowait(f"t{i}", b"z" * 50, brief)
    later = time.monotonic() + 0.2  # history expired, meta not yet
    for _ in range(5):  # bounded: a few rounds cover every record
        broker.sweep(now=later, batch=1000)
    meta_only = sum(record_cost(f"t{i}") for i in range(3000))  # no ring, no entries
    assert broker.topic_records == 3000 and broker.kept_bytes == meta_only
    much_later = time.monotonic() + 1.0
    for _ in range(5):
        broker.sweep(now=much_later, batch=1000)
    assert (broker.topic_records, broker.kept_bytes) == (0, 0)


async def test_the_background_sweep_runs() -> None:
    broker = MemoryBroker(meta_ttl=0.05, sweep_interval=0.02)
    await broker.start(lambda topic, pub: None)
    try:
        broker.publish_nowait("gone", b"1", POLICY)
        async with asyncio.timeout(2):
            while broker.topic_records:
                await asyncio.sleep(0.01)
        assert broker.kept_bytes == 0
    finally:
        await broker.close()


def test_memory_stays_flat_over_10000_topics() -> None:
    cap = 1024 * 1024
    broker = MemoryBroker(max_bytes=cap)
    payload = b'{"text":"%s"}' % (b"m" * 180)
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(10_000):
            for _ in range(5):
                broker.publish_nowait(f"topic-{i}", payload, POLICY)
            if i == 4_999:
                halfway = tracemalloc.get_traced_memory()[0]
        gc.collect()
        final = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_topic = kept("topic-0000") + 5 * (ENTRY_COST + len(payload))
    assert broker.kept_bytes <= cap
    assert broker.topic_records <= cap // per_topic + 1
    assert broker.evicted_topics >= 10_000 - broker.topic_records
    # The second 5000 topics cost no more memory than the first: old ones were dropped.
    assert final < halfway * 1.2, (halfway, final)
    assert final < cap  # the count is honest: what the process really holds


def test_publisher_info_counts_towards_the_byte_cap_as_it_comes_and_goes() -> None:
    broker = MemoryBroker()
    who = Publisher("c", "alice", b'{"name":"' + b"A" * 90 + b'"}')
    ring = HistoryPolicy(size=2, ttl=60)
    broker.publish_nowait("t", b"1", ring, who)
    broker.publish_nowait("t", b"2", ring)
    assert broker.kept_bytes == kept("t") + 2 * (ENTRY_COST + 1) + len(who.info)
    broker.publish_nowait("t", b"3", ring)  # pushes out the one with the publisher
    assert broker.kept_bytes == kept("t") + 2 * (ENTRY_COST + 1)
    broker.publish_nowait("t", b"4", HistoryPolicy(size=1, ttl=60), who)  # recounted
    assert broker.kept_bytes == kept("t") + ENTRY_COST + 1 + len(who.info)


def _traced(work: Callable[[], object]) -> int:
    """Bytes still allocated after `work` (tracemalloc, after a collection)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("topics", "per_topic", "size"), [
    (20_000, 1, 18),  # many topics, one small publication each (finding 8)
    (200, 100, 18),  # full rings of small publications
    (2_000, 1, 5_000),  # larger payloads
])
def test_kept_bytes_is_what_the_process_holds(topics: int, per_topic: int, size: int) -> None:
    """The byte cap counts what the process really holds: never less (the cap would
    undercount, finding 8: 2.3x before), and not wildly more (it would waste the cap)."""
    broker = MemoryBroker(max_bytes=0)
    payload = b"p" * size
    policy = HistoryPolicy(size=100, ttl=60.0)

    def publish() -> None:
        for i in range(topics):
            for _ in range(per_topic):
                broker.publish_nowait(f"room:t{i:06d}", payload, policy)

    real = _traced(publish)
    assert real <= broker.kept_bytes <= 1.6 * real, (real, broker.kept_bytes)


def test_meta_only_records_count_what_they_hold() -> None:
    """A position whose history expired (kept a day) holds no ring, and counts that."""
    broker = MemoryBroker(max_bytes=0)
    brief = HistoryPolicy(size=100, ttl=0.01)
    later = time.monotonic() + 1

    def publish_then_expire() -> None:
        for i in range(10_000):
            broker.publish_nowait(f"room:t{i:06d}", b"x" * 100, brief)
        broker.sweep(now=later)  # the first round takes the snapshot of the topics
        broker.sweep(now=later, batch=20_000)

    real = _traced(publish_then_expire)
    assert broker.topic_records == 10_000  # the positions stay (meta_ttl)
    assert real <= broker.kept_bytes <= 2 * real, (real, broker.kept_bytes)
    assert broker.kept_bytes < 10_000 * 600  # no deque per meta-only record


def test_50000_distinct_topics_stay_under_the_cap() -> None:
    """Finding 8: one topic per publish, 50,000 times. The node's real growth stays
    under the cap (it was 2.3x the cap before: the count left out most of a record)."""
    cap = 8 * MiB
    broker = MemoryBroker(max_bytes=cap)
    payload = b'{"text":"hello"}'

    def publish() -> None:
        for i in range(50_000):
            broker.publish_nowait(f"room:{i:08d}", payload, POLICY)

    real = _traced(publish)
    assert broker.kept_bytes <= cap and broker.evicted_topics > 0
    assert real <= cap, f"{real / MiB:.1f} MiB held for a {cap / MiB:.0f} MiB cap"
