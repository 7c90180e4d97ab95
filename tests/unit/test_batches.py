"""The hub's shared batches (hub/wire.py `Batch`) on a batched wire, without a transport.

Nothing flushes here, so a batch stays open until the hub or a subscriber closes it:
exactly the window in which a frame could reach someone it was not for.
"""

from __future__ import annotations

from pubsocket import Hub
from pubsocket.codecs import PLAIN
from pubsocket.hub.wire import MAX_BATCH, Batch, WireSet, identity

WIRE = WireSet(identity, "test-batched", batched=True)(PLAIN)


class Queue:
    """What `server.outbound.Outbound` does with its queue: a batch queued before
    anything else is closed, so the hub's later frames cannot overtake that thing."""

    def __init__(self) -> None:
        self.out: list[bytes | Batch] = []

    def deliver(self, frame: bytes) -> None:
        if self.out and isinstance(self.out[-1], Batch):
            self.out[-1].open = False
        self.out.append(frame)

    def deliver_batch(self, batch: Batch) -> None:
        if self.out and isinstance(self.out[-1], Batch):
            self.out[-1].open = False
        self.out.append(batch)

    def close_nowait(self, code: int, reason: str = "") -> None:
        pass

    @property
    def frames(self) -> list[bytes]:
        return [f for x in self.out for f in (x if isinstance(x, Batch) else [x])]


async def test_one_tick_of_publications_is_one_shared_batch(hub: Hub) -> None:
    subs = [Queue() for _ in range(4)]
    for s in subs:
        await hub.subscribe(s, "t", WIRE)
    for i in range(3):
        await hub.publish("t", i)
    assert all(len(s.out) == 1 and s.out[0] is subs[0].out[0] for s in subs)
    assert subs[0].frames == [b"0", b"1", b"2"]
    batch = subs[0].out[0]
    assert isinstance(batch, Batch)
    assert batch.joined() == b"012" and not batch.open  # joined once, then closed


async def test_a_subscriber_never_gets_what_was_published_before_it_joined(hub: Hub) -> None:
    early, late = Queue(), Queue()
    await hub.subscribe(early, "t", WIRE)
    await hub.publish("t", "before")
    await hub.subscribe(late, "t", WIRE)
    await hub.publish("t", "after")
    assert early.frames == [b'"before"', b'"after"']
    assert late.frames == [b'"after"']


async def test_a_leaver_never_gets_what_is_published_after_it_left(hub: Hub) -> None:
    stays, leaves = Queue(), Queue()
    await hub.subscribe(stays, "t", WIRE)
    await hub.subscribe(leaves, "t", WIRE)
    await hub.publish("t", "kept")
    await hub.unsubscribe(leaves, "t")
    await hub.publish("t", "gone")
    assert stays.frames == [b'"kept"', b'"gone"']
    assert leaves.frames == [b'"kept"']


async def test_a_frame_queued_after_a_batch_closes_it(hub: Hub) -> None:
    sub = Queue()
    await hub.subscribe(sub, "t", WIRE)
    await hub.publish("t", 1)
    sub.deliver(b"reply")
    await hub.publish("t", 2)
    assert sub.frames == [b"1", b"reply", b"2"]
    assert len(sub.out) == 3  # a new batch after the reply


async def test_a_batch_is_bounded(hub: Hub) -> None:
    sub = Queue()
    await hub.subscribe(sub, "t", WIRE)
    for i in range(MAX_BATCH + 1):
        await hub.publish("t", i)
    assert [len(x) for x in sub.out] == [MAX_BATCH, 1]
