"""`Hub.subscription_count` and `Topic.count` are kept incrementally (O(1) reads): after
random interleavings of subscribes (plain, recovering inline or through a history read,
first subscribes through broker I/O that may fail), unsubscribes, disconnects,
cancellations and publishes, they equal the brute-force sums over the hub's topics."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from pubsocket import Hub, Settings
from pubsocket.brokers import HistoryPage, MemoryBroker
from pubsocket.brokers.base import Position
from pubsocket.codecs import V1
from pubsocket.errors import BrokerError, BrokerUnavailable
from pubsocket.hub.wire import RAW, WireSet
from pubsocket.protocol import SubscribeResult

TOPICS = ("a", "b", "c", "d")
STEPS = 400  # random operations per seed


class Sink:
    """A subscriber that drops what it is handed."""

    def deliver(self, frame: bytes) -> None:
        pass

    def close_nowait(self, code: int, reason: str = "") -> None:
        pass


class FickleBroker(MemoryBroker):
    """A memory broker that, at random, needs I/O (yields) for subscribes and history
    reads, fails a first subscribe or a history read, and unsubscribes in the
    background: so the hub takes its awaiting paths (holds, `_finish_first`) too."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def subscribe_nowait(self, topic: str) -> bool:
        return self.rng.random() < 0.5 and super().subscribe_nowait(topic)

    async def subscribe(self, topic: str) -> None:
        for _ in range(self.rng.randrange(3)):
            await asyncio.sleep(0)
        if self.rng.random() < 0.1:
            raise BrokerUnavailable("flaky")
        MemoryBroker.subscribe_nowait(self, topic)

    def unsubscribe_nowait(self, topic: str) -> bool:
        return self.rng.random() < 0.5 and super().unsubscribe_nowait(topic)

    def history_nowait(  # type: ignore[override]
            self, topic: str, since: int | None, limit: int, max_bytes: int = 0
    ) -> HistoryPage | None:
        if self.rng.random() < 0.5:
            return None
        return super().history_nowait(topic, since, limit, max_bytes)

    async def history(self, topic: str, since: int | None, limit: int,
                      max_bytes: int = 0) -> HistoryPage:
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)
        if since is not None and self.rng.random() < 0.1:
            raise BrokerUnavailable("flaky")
        return MemoryBroker.history_nowait(self, topic, since, limit, max_bytes)


def brute(hub: Hub) -> int:
    """The count the old O(topics) code computed; each topic's `count` checked too."""
    total = 0
    for entry in hub._topics.values():
        n = sum(len(group) for group in entry.subs.values()) + len(entry.held)
        assert entry.count == n
        total += n
    return total


@pytest.mark.parametrize("seed", range(4))
async def test_subscription_count_equals_the_brute_force_sum(seed: int) -> None:
    rng = random.Random(seed)
    hub = Hub(Settings(), FickleBroker(rng))
    await hub.start()
    wires = [RAW(V1), WireSet(lambda p: b"[" + p + b"]", "boxed")(V1)]
    subs = [Sink() for _ in range(6)]
    tasks: list[asyncio.Task[Any]] = []

    def since(topic: str) -> Position:
        entry = hub._topics.get(topic)
        epoch = entry.epoch if entry is not None and rng.random() < 0.8 else "other"
        top = entry.offset if entry is not None else 0
        return Position(max(0, top - rng.randrange(4)), epoch)

    async def settle() -> None:
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)

    try:
        for _ in range(STEPS):
            sub, topic = rng.choice(subs), rng.choice(TOPICS)
            op = rng.randrange(8)
            if op <= 2:  # subscribe, a third of them recovering
                at = since(topic) if op == 2 else None
                result = hub.subscribe_nowait(sub, topic, rng.choice(wires), at)
                if not isinstance(result, SubscribeResult):
                    tasks.append(asyncio.ensure_future(result))
            elif op == 3:
                hub.unsubscribe_nowait(sub, topic)
            elif op == 4:  # disconnect: every topic of the subscriber
                for name in TOPICS:
                    hub.unsubscribe_nowait(sub, name)
            elif op == 5 and tasks:
                rng.choice(tasks).cancel()
            elif op == 6:
                tasks.append(asyncio.ensure_future(hub.publish(topic, {"n": 1})))
            await settle()
            assert hub.subscription_count == brute(hub)
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                assert isinstance(task.exception(), BrokerError)
        assert hub.subscription_count == brute(hub)
        for sub in subs:
            for name in TOPICS:
                hub.unsubscribe_nowait(sub, name)
        assert hub.subscription_count == brute(hub) == 0
        assert not hub._topics
    finally:
        await hub.close()
    assert hub.subscription_count == 0


async def test_close_drops_the_count_with_the_topics() -> None:
    hub = Hub(Settings(), MemoryBroker())
    await hub.start()
    for i in range(3):
        await hub.subscribe(Sink(), f"t{i}")
    assert hub.subscription_count == 3
    await hub.close()
    assert hub.subscription_count == 0


async def test_a_subscriber_in_two_wire_groups_and_held_counts_as_before() -> None:
    """The count keeps the old sum's meaning: one per wire group plus one per hold; going
    from held to live is not counted twice; `add` is idempotent."""
    hub = Hub(Settings(), MemoryBroker())
    await hub.start()
    try:
        sub = Sink()
        plain, boxed = RAW(V1), WireSet(lambda p: b"[" + p + b"]", "boxed")(V1)
        await hub.subscribe(sub, "t", plain)
        await hub.subscribe(sub, "t", plain)
        assert hub.subscription_count == hub.subscriber_count("t") == 1
        await hub.subscribe(sub, "t", boxed)
        assert hub.subscription_count == 2
        entry = hub._topics["t"]
        other = Sink()
        hold = entry.hold(other)
        assert entry.hold(other) is not hold and hub.subscription_count == 3
        entry.unhold(other)
        entry.add(other, plain)
        assert hub.subscription_count == brute(hub) == 3
        hub.unsubscribe_nowait(sub, "t")
        assert hub.subscription_count == brute(hub) == 1
    finally:
        await hub.close()
