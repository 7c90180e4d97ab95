"""Delivery guarantees of the hub over the real memory broker, with faults injected.

The brokers here are `MemoryBroker` subclasses that lose, repeat or delay one thing (a
delivery, a history read): everything else is the real broker. Each test checks what
subscribers of both codecs receive, frame by frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pubsocket import Hub, Settings
from pubsocket.brokers import HistoryPage, HistoryPolicy, MemoryBroker, Position, Publication
from pubsocket.brokers.base import DeliverFn, ResyncFn
from pubsocket.codecs import PLAIN, V1
from pubsocket.hub.wire import RAW
from tests.unit.test_hub import Recorder


class FaultyBroker(MemoryBroker):
    """The memory broker with injectable delivery faults: `drop` swallows the next N
    deliveries, `repeat` hands the next N over twice. `resync_hub()` is the broker's
    own resync callback, as after a reconnect."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = 0
        self.repeat = 0
        self.dropped: list[Publication] = []
        self._resync: ResyncFn | None = None

    async def start(self, deliver: DeliverFn, resync: ResyncFn | None = None) -> None:
        self._resync = resync

        def faulty(topic: str, pub: Publication) -> None:
            if self.drop:
                self.drop -= 1
                self.dropped.append(pub)
                return
            deliver(topic, pub)
            if self.repeat:
                self.repeat -= 1
                deliver(topic, pub)

        await super().start(faulty, resync)

    def resync_hub(self) -> None:
        assert self._resync is not None, "the hub passed no resync callback"
        self._resync()


class GatedHistory(FaultyBroker):
    """Reads with `since` wait for `gate` (and are not served inline)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.reads = 0

    def history_nowait(self, topic: str, since: int | None, limit: int,
                       max_bytes: int = 0) -> HistoryPage | None:
        return None if since is not None else super().history_nowait(topic, since, limit,
                                                                     max_bytes)

    async def history(self, topic: str, since: int | None, limit: int,
                      max_bytes: int = 0) -> HistoryPage:
        if since is not None:
            self.reads += 1
            await self.gate.wait()
        page = MemoryBroker.history_nowait(self, topic, since, limit, max_bytes)
        assert page is not None
        return page

    async def read_started(self) -> None:
        """Return once a read with `since` waits at the gate (2 s at most)."""
        async with asyncio.timeout(2):
            while not self.reads:
                await asyncio.sleep(0)


async def idle(hub: Hub) -> None:
    """Wait (bounded) until the hub's background work (fills) is done."""
    async with asyncio.timeout(2):
        for _ in range(10):
            await asyncio.sleep(0)
        while any(not t.done() for t in hub._background):
            await asyncio.sleep(0.001)
        for _ in range(10):
            await asyncio.sleep(0)


def offsets(rec: Recorder) -> list[int]:
    return [m["offset"] for m in rec.messages if m["type"] == "message"]


async def make_hub(broker: MemoryBroker, **settings: Any) -> Hub:
    hub = Hub(Settings(**settings), broker)
    await hub.start()
    return hub


@pytest.fixture
async def faulty() -> AsyncIterator[tuple[Hub, FaultyBroker]]:
    broker = FaultyBroker()
    hub = await make_hub(broker)
    yield hub, broker
    await hub.close()


async def two_subscribers(hub: Hub, topic: str = "t") -> tuple[Recorder, Recorder]:
    plain, v1 = Recorder(), Recorder()
    await hub.subscribe(plain, topic, RAW(PLAIN))
    await hub.subscribe(v1, topic, RAW(V1))
    return plain, v1


async def second_dropped(hub: Hub, broker: FaultyBroker) -> tuple[Recorder, Recorder]:
    """`two_subscribers` of "t", then publications 1 (delivered) and 2 (kept in history,
    lost on its way to the hub)."""
    plain, v1 = await two_subscribers(hub)
    await hub.publish("t", 1)
    broker.drop = 1
    await hub.publish("t", 2)
    return plain, v1


# -- holes ----------------------------------------------------------------------------------


async def test_a_dropped_publication_is_filled_from_history(
        faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, broker = faulty
    plain, v1 = await second_dropped(hub, broker)
    for n in range(3, 6):
        await hub.publish("t", n)
    await idle(hub)
    assert [p.offset for p in broker.dropped] == [2]
    assert plain.messages == [1, 2, 3, 4, 5]
    assert offsets(v1) == [1, 2, 3, 4, 5]
    assert [m["data"] for m in v1.messages] == [1, 2, 3, 4, 5]
    assert hub.stats.gaps == 0
    await hub.publish("t", 6)  # live again afterwards
    assert plain.messages[-1] == 6
    assert offsets(v1)[-1] == 6


async def test_live_publications_during_a_fill_wait_their_turn() -> None:
    broker = GatedHistory()
    hub = await make_hub(broker)
    plain, v1 = await second_dropped(hub, broker)
    await hub.publish("t", 3)  # the hole is noticed: a history read starts
    await broker.read_started()
    for n in range(4, 7):  # arrive while the read is in flight
        await hub.publish("t", n)
    assert plain.messages == [1]
    broker.gate.set()
    await idle(hub)
    assert plain.messages == [1, 2, 3, 4, 5, 6]
    assert offsets(v1) == [1, 2, 3, 4, 5, 6]
    assert hub.stats.gaps == 0
    await hub.close()


async def short_history_hole() -> tuple[Hub, FaultyBroker, Recorder, Recorder]:
    """History keeps 2; offset 1 is published before anyone subscribes, 2 is delivered,
    3 is lost on its way to the hub, then 4..8 arrive: history only still holds 7, 8."""
    broker = FaultyBroker()
    hub = await make_hub(broker, history_size=2)
    await hub.publish("t", 1)  # the topic's history starts with its policy (size 2)
    plain, v1 = await two_subscribers(hub)
    await hub.publish("t", 2)
    broker.drop = 1
    await hub.publish("t", 3)
    for n in range(4, 9):
        await hub.publish("t", n)
    kept = broker.history_nowait("t", 0, 10).publications
    assert [p.offset for p in kept] == [7, 8], "the broker must keep only 2 here"
    return hub, broker, plain, v1


async def test_a_hole_history_no_longer_holds_is_announced_before_later_publications() -> None:
    hub, broker, plain, v1 = await short_history_hole()
    await idle(hub)
    got = v1.messages
    kinds = [m["type"] for m in got]
    assert kinds.count("gap") == 1
    gap_at = kinds.index("gap")
    gap = got[gap_at]
    epoch = broker.history_nowait("t", None, 0).position.epoch
    assert set(gap) == {"type", "topic", "offset", "epoch"}
    assert gap["topic"] == "t" and gap["epoch"] == epoch
    before = [m["offset"] for m in got[:gap_at]]
    after = [m["offset"] for m in got[gap_at + 1:]]
    assert before == [2]
    assert after and after[-1] == 8
    assert after == sorted(set(after))  # in order, none twice
    assert all(o > gap["offset"] for o in after)  # the stream continues after the notice
    assert 3 not in after
    assert hub.stats.gaps == 1
    # plain subscribers get nothing extra: the same publications, no notice
    assert plain.messages == [m["data"] for m in got if m["type"] == "message"]
    await hub.close()


async def test_a_history_gap_does_not_discard_publications_the_hub_received() -> None:
    # Only offset 3 was lost. 4..8 reached the hub live (held while it read history), so
    # they must still be delivered: the gap notice covers offset 3 alone.
    hub, broker, plain, v1 = await short_history_hole()
    await idle(hub)
    epoch = broker.history_nowait("t", None, 0).position.epoch
    assert v1.messages == [
        {"type": "message", "topic": "t", "offset": 2, "data": 2},
        {"type": "gap", "topic": "t", "offset": 3, "epoch": epoch},
        *({"type": "message", "topic": "t", "offset": n, "data": n} for n in range(4, 9)),
    ]
    assert plain.messages == [2, 4, 5, 6, 7, 8]
    await hub.close()


async def test_a_new_epoch_is_announced_with_a_gap_notice(
        faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, broker = faulty
    plain, v1 = await two_subscribers(hub)
    await hub.publish("t", "old")
    # the topic's history was lost (engine restart): the stream restarts at 1, new epoch
    hub._deliver("t", Publication(1, "fresh", b'"new1"'))
    hub._deliver("t", Publication(2, "fresh", b'"new2"'))
    await idle(hub)
    old_epoch = broker.history_nowait("t", None, 0).position.epoch
    assert old_epoch != "fresh"
    assert v1.messages == [
        {"type": "message", "topic": "t", "offset": 1, "data": "old"},
        {"type": "gap", "topic": "t", "offset": 0, "epoch": "fresh"},
        {"type": "message", "topic": "t", "offset": 1, "data": "new1"},
        {"type": "message", "topic": "t", "offset": 2, "data": "new2"},
    ]
    assert plain.messages == ["old", "new1", "new2"]
    assert hub.stats.gaps == 1


async def test_duplicates_are_dropped_and_counted(faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, broker = faulty
    plain, v1 = await two_subscribers(hub)
    await hub.publish("t", 1)
    broker.repeat = 2
    await hub.publish("t", 2)
    await hub.publish("t", 3)
    await hub.publish("t", 4)
    await idle(hub)
    assert plain.messages == [1, 2, 3, 4]
    assert offsets(v1) == [1, 2, 3, 4]
    assert hub.stats.duplicates == 2
    assert hub.stats.received == 6
    assert hub.stats.gaps == 0


async def test_an_old_publication_delivered_late_is_a_duplicate(
        faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, _ = faulty
    plain, _v1 = await two_subscribers(hub)
    first = await hub.publish("t", 1)
    await hub.publish("t", 2)
    hub._deliver("t", first)
    await idle(hub)
    assert plain.messages == [1, 2]
    assert hub.stats.duplicates == 1


async def test_topics_without_history_have_no_positions(
        faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, _ = faulty
    hub.rules.prepend({"off.*": None})
    plain, v1 = await two_subscribers(hub, "off.1")
    pub = await hub.publish("off.1", "x")
    assert (pub.offset, pub.epoch) == (0, "")
    hub._deliver("off.1", pub)  # at-most-once topics have no way to spot repeats
    await idle(hub)
    assert v1.messages == [{"type": "message", "topic": "off.1", "data": "x"}] * 2
    assert plain.messages == ["x", "x"]
    assert hub.stats.duplicates == 0


# -- resync ---------------------------------------------------------------------------------


async def test_resync_without_a_hole_sends_nothing(faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, broker = faulty
    plain, v1 = await two_subscribers(hub)
    await hub.publish("t", 1)
    await hub.publish("t", 2)
    broker.resync_hub()
    await idle(hub)
    assert plain.messages == [1, 2]
    assert offsets(v1) == [1, 2]
    assert hub.stats.gaps == 0
    assert hub.stats.duplicates == 0
    await hub.publish("t", 3)  # still live after the resync
    assert plain.messages == [1, 2, 3]


async def test_resync_replays_dropped_deliveries(faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, broker = faulty
    plain, v1 = await two_subscribers(hub)
    other_plain, other_v1 = await two_subscribers(hub, "u")
    await hub.publish("t", 1)
    broker.drop = 3  # the link broke: these never arrived and nothing came after them
    await hub.publish("t", 2)
    await hub.publish("u", "u1")
    await hub.publish("t", 3)
    await idle(hub)
    assert plain.messages == [1]
    broker.resync_hub()
    await idle(hub)
    assert plain.messages == [1, 2, 3]
    assert offsets(v1) == [1, 2, 3]
    assert other_plain.messages == ["u1"]
    assert offsets(other_v1) == [1]
    assert hub.stats.gaps == 0
    await hub.publish("t", 4)
    assert plain.messages == [1, 2, 3, 4]


async def test_resync_live_publications_during_the_read_keep_order() -> None:
    broker = GatedHistory()
    hub = await make_hub(broker)
    plain, v1 = await second_dropped(hub, broker)
    broker.resync_hub()
    await broker.read_started()
    await hub.publish("t", 3)
    await hub.publish("t", 4)
    assert plain.messages == [1]
    broker.gate.set()
    await idle(hub)
    assert plain.messages == [1, 2, 3, 4]
    assert offsets(v1) == [1, 2, 3, 4]
    await hub.close()


# -- subscribe with since (hub level) ---------------------------------------------------------


async def test_subscribe_since_recovers_with_replay(faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, _ = faulty
    watcher = Recorder()
    await hub.subscribe(watcher, "t")
    pubs = [await hub.publish("t", n) for n in range(1, 6)]
    epoch = pubs[0].epoch
    back = Recorder()
    result = await hub.subscribe(back, "t", RAW(V1), since=Position(2, epoch))
    assert result.recovered
    assert result.position == Position(2, epoch)
    assert [p.offset for p in result.replay] == [3, 4, 5]
    assert result.replay == tuple(pubs[2:])
    assert back.frames == []  # the replay is the caller's to send, live comes later
    await hub.publish("t", 6)
    assert offsets(back) == [6]
    assert hub.stats.recoveries == 1


async def test_subscribe_since_the_current_position(faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, _ = faulty
    await hub.subscribe(Recorder(), "t")
    pub = await hub.publish("t", 1)
    result = await hub.subscribe(Recorder(), "t", RAW(V1), since=Position(1, pub.epoch))
    assert (result.recovered, result.position, result.replay) == (True, Position(1, pub.epoch),
                                                                  ())


@pytest.mark.parametrize("since", [Position(1, "wrong"), Position(50, "?"), Position(0, "")])
async def test_subscribe_since_a_foreign_position_is_not_recovered(
        faulty: tuple[Hub, FaultyBroker], since: Position) -> None:
    hub, _ = faulty
    await hub.subscribe(Recorder(), "t")
    last = [await hub.publish("t", n) for n in range(3)][-1]
    result = await hub.subscribe(Recorder(), "t", RAW(V1), since=since)
    assert not result.recovered
    assert result.position == Position(last.offset, last.epoch)
    assert result.replay == ()
    assert hub.stats.recovery_failures == 1


async def test_subscribe_since_ahead_or_too_far_back(faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, _ = faulty
    hub.rules.prepend({"small": HistoryPolicy(3, 60.0)})
    await hub.subscribe(Recorder(), "small")
    pubs = [await hub.publish("small", n) for n in range(1, 7)]
    epoch = pubs[0].epoch
    ahead = await hub.subscribe(Recorder(), "small", RAW(V1), since=Position(9, epoch))
    assert (ahead.recovered, ahead.position, ahead.replay) == (False, Position(6, epoch), ())
    behind = await hub.subscribe(Recorder(), "small", RAW(V1), since=Position(1, epoch))
    assert (behind.recovered, behind.position, behind.replay) == (False, Position(6, epoch), ())
    edge = await hub.subscribe(Recorder(), "small", RAW(V1), since=Position(3, epoch))
    assert edge.recovered
    assert [p.offset for p in edge.replay] == [4, 5, 6]


async def test_first_subscriber_since_a_position_recovers_too(
        faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, _ = faulty
    pubs = [await hub.publish("t", n) for n in range(1, 4)]  # nobody subscribed here
    sub = Recorder()
    result = await hub.subscribe(sub, "t", RAW(V1), since=Position(1, pubs[0].epoch))
    assert result.recovered
    assert [p.offset for p in result.replay] == [2, 3]
    await hub.publish("t", 4)
    assert offsets(sub) == [4]


async def test_recovery_read_overlapping_live_delivery_has_no_duplicate() -> None:
    broker = GatedHistory()
    hub = await make_hub(broker)
    watcher = Recorder()
    await hub.subscribe(watcher, "t")
    pubs = [await hub.publish("t", n) for n in range(1, 4)]
    back = Recorder()
    task = asyncio.create_task(hub.subscribe(back, "t", RAW(V1), since=Position(1, pubs[0].epoch)))
    await broker.read_started()
    await hub.publish("t", 4)  # published while the recovery read is in flight
    await hub.publish("t", 5)
    assert back.frames == []  # held, not delivered live
    broker.gate.set()
    result = await asyncio.wait_for(task, 2)
    assert result.recovered
    assert [p.offset for p in result.replay] == [2, 3, 4, 5]
    assert back.frames == []
    await hub.publish("t", 6)
    assert offsets(back) == [6]
    assert watcher.messages == [1, 2, 3, 4, 5, 6]
    await hub.close()


async def test_recovery_read_with_a_gap_meanwhile_is_not_recovered() -> None:
    broker = GatedHistory()
    hub = await make_hub(broker)
    await hub.subscribe(Recorder(), "t")
    pubs = [await hub.publish("t", n) for n in range(1, 3)]
    back = Recorder()
    task = asyncio.create_task(hub.subscribe(back, "t", RAW(V1), since=Position(1, pubs[0].epoch)))
    await broker.read_started()
    hub._deliver("t", Publication(1, "fresh", b'"reset"'))  # history lost meanwhile
    broker.gate.set()
    result = await asyncio.wait_for(task, 2)
    assert not result.recovered
    assert result.position == Position(0, "fresh")
    assert [(p.offset, p.epoch) for p in result.replay] == [(1, "fresh")]
    await hub.close()


# -- faults in history itself -----------------------------------------------------------------


class ExpiringHistory(FaultyBroker):
    """History reads omit publications up to `expired_through` (their TTL ran out); the
    position is still the real one. `lost_epoch` makes reads answer as after an engine
    restart without persistence: nothing kept, offset 0, a new epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.expired_through = 0
        self.lost_epoch: str | None = None

    def history_nowait(self, topic: str, since: int | None, limit: int,
                       max_bytes: int = 0) -> HistoryPage:
        if self.lost_epoch is not None:
            return HistoryPage([], Position(0, self.lost_epoch))
        page = super().history_nowait(topic, since, limit, max_bytes)
        kept = [p for p in page.publications if p.offset > self.expired_through]
        return HistoryPage(kept, page.position)


async def test_resync_announces_a_hole_history_expired_at_once() -> None:
    broker = ExpiringHistory()
    hub = await make_hub(broker)
    plain, v1 = await two_subscribers(hub)
    await hub.publish("t", 1)
    broker.drop = 4
    for n in range(2, 6):
        await hub.publish("t", n)
    broker.expired_through = 5  # 2..5 missed, and history no longer has them
    broker.resync_hub()
    await idle(hub)
    epoch = broker.history_nowait("t", None, 0).position.epoch
    # the subscriber must learn now that it skipped to 5, not only when 6 comes
    assert v1.messages == [
        {"type": "message", "topic": "t", "offset": 1, "data": 1},
        {"type": "gap", "topic": "t", "offset": 5, "epoch": epoch},
    ]
    await hub.publish("t", 6)
    await idle(hub)
    assert v1.messages[-1] == {"type": "message", "topic": "t", "offset": 6, "data": 6}
    assert [m["type"] for m in v1.messages].count("gap") == 1
    assert plain.messages == [1, 6]
    assert hub.stats.gaps == 1
    await hub.close()


async def test_history_lost_during_a_fill_moves_the_topic_to_the_new_epoch() -> None:
    broker = ExpiringHistory()
    hub = await make_hub(broker)
    plain, v1 = await second_dropped(hub, broker)
    await hub.publish("t", 3)  # hole noticed, fill spawned
    broker.lost_epoch = "fresh"  # the engine lost the topic before the fill read it
    await idle(hub)
    hub._deliver("t", Publication(1, "fresh", b'"new1"'))
    await idle(hub)
    got = v1.messages
    gaps = [m for m in got if m["type"] == "gap"]
    assert gaps, got
    assert gaps[-1]["epoch"] == "fresh"  # the stream ends up on the new epoch ...
    assert got[-1] == {"type": "message", "topic": "t", "offset": 1, "data": "new1"}
    # ... once: no notice sends it back to the lost epoch and forward again
    assert [g["epoch"] for g in gaps] == ["fresh"], got
    assert plain.messages[-1] == "new1"
    await hub.close()


async def test_recovery_during_a_fill_has_no_duplicate(
        faulty: tuple[Hub, FaultyBroker]) -> None:
    hub, broker = faulty
    await hub.subscribe(Recorder(), "t")
    first = await hub.publish("t", 1)
    broker.drop = 1
    await hub.publish("t", 2)
    await hub.publish("t", 3)  # the hub holds 3 and will fill 2 from history
    back = Recorder()
    result = await hub.subscribe(back, "t", RAW(V1), since=Position(0, first.epoch))
    await idle(hub)
    await hub.publish("t", 4)
    replayed = [p.offset for p in result.replay]
    live = offsets(back)
    assert result.recovered
    assert replayed + live == [1, 2, 3, 4]  # every offset once, in order
