"""One topic's state in the hub: its subscribers by wire, its position, what is held."""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..brokers.base import Position, Publication
from .wire import Batch, Wire


class Subscriber(Protocol):
    """What the hub delivers to. `deliver` must not block, raise, or call into the hub;
    `close_nowait` ends the connection (a protocol that cannot be told of a loss)."""

    def deliver(self, frame: bytes) -> None: ...

    def close_nowait(self, code: int, reason: str = "") -> None: ...


class BatchSubscriber(Subscriber, Protocol):
    """A subscriber of a ``batched`` wire: also takes a shared `Batch`, to write it after
    what it already queued; frames the hub appends to the batch while it is open are
    written with it. Anything queued after the batch must `close` it first."""

    def deliver_batch(self, batch: Batch) -> None: ...


class Hold:
    """Live publications buffered for one subscriber while its recovery read runs."""

    __slots__ = ("gap", "pubs")

    def __init__(self) -> None:
        self.pubs: list[Publication] = []
        self.gap: Position | None = None  # live delivery had a hole during the read

    def add(self, pub: Publication, cap: int) -> None:
        self.pubs.append(pub)
        if len(self.pubs) > cap:  # bounded: give up on recovery, keep the newest
            self.mark_gap(Position(pub.offset - 1, pub.epoch))
            self.pubs = [pub]

    def mark_gap(self, position: Position) -> None:
        self.gap = position
        self.pubs = []


class Tally:
    """A running count of (subscriber, topic) pairs, shared by the topics of one hub so
    the hub's total is read in O(1) (the cluster announce reads it every few seconds)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Topic:
    """Subscribers of one topic, grouped by wire so each publication is encoded once
    per codec and framed once per wire in use; the last offset/epoch fanned out;
    `backlog` holds live publications while the hub reads history (None when live).
    `watchers` are the live subscribers allowed to see presence join/leave pushes
    (with their wire).

    Counting contract: `n` is the number of live (per group) plus held subscribers, and
    `tally.n` moves by the same amounts. So `subs` and `held` change only through `add`,
    `hold`, `unhold` and `discard`; a topic leaving the hub's map while not empty must
    be `detach`ed (its count leaves the hub's total)."""

    __slots__ = ("backlog", "batches", "epoch", "held", "n", "offset", "ready", "subs",
                 "tally", "waiting", "watchers")

    def __init__(self, tally: Tally | None = None) -> None:
        self.tally = Tally() if tally is None else tally
        self.n = 0  # live subscribers (summed over the groups) + held ones
        self.subs: dict[Wire, dict[Subscriber, None]] = {}
        self.held: dict[Subscriber, Hold] = {}
        self.ready: asyncio.Future[None] | None = None  # set until broker + position known
        self.waiting = 0  # subscribe() calls parked on `ready`
        self.offset = 0
        self.epoch = ""
        self.backlog: list[Publication] | None = None
        self.watchers: dict[Subscriber, Wire] | None = None  # made on the first watcher
        # the open `Batch` of each batched wire this tick (made on the first fan-out)
        self.batches: dict[Wire, Batch] | None = None

    def add(self, sub: Subscriber, wire: Wire) -> None:
        """Make `sub` live on this topic through `wire` (idempotent)."""
        group = self.subs.get(wire)
        if group is None:
            group = self.subs[wire] = {}
        if sub not in group:
            group[sub] = None
            self.n += 1  # `_moved` inline: subscribe is a per-connection path
            self.tally.n += 1
        self._close_batches()  # a newcomer must not get the rest of a batch it never had

    def hold(self, sub: Subscriber) -> Hold:
        """Hold `sub` (its live publications buffered) while its recovery read runs;
        replaces a hold it already had."""
        new = sub not in self.held
        hold = self.held[sub] = Hold()
        if new:
            self._moved(1)
        return hold

    def unhold(self, sub: Subscriber) -> Hold | None:
        """End the hold of `sub`, if any, and return it."""
        hold = self.held.pop(sub, None)
        if hold is not None:
            self._moved(-1)
        return hold

    def discard(self, sub: Subscriber) -> None:
        """Remove `sub` (live or held) from this topic."""
        gone = 0 if self.held.pop(sub, None) is None else 1
        self._close_batches()  # nor a leaver what is published after it left
        if self.watchers is not None:
            self.watchers.pop(sub, None)
        for wire, group in list(self.subs.items()):
            if group.pop(sub, 0) is None:
                gone += 1
                if not group:
                    del self.subs[wire]
        if gone:
            self.n -= gone
            self.tally.n -= gone

    def detach(self) -> None:
        """Take this topic's count out of the hub's total (it leaves the hub's map);
        later changes to it count apart."""
        self.tally.n -= self.n
        self.tally = Tally()
        self.tally.n = self.n

    def _moved(self, delta: int) -> None:
        self.n += delta
        self.tally.n += delta

    def _close_batches(self) -> None:
        batches = self.batches
        if batches:
            for batch in batches.values():
                batch.open = False
            batches.clear()

    @property
    def empty(self) -> bool:
        return not self.subs and not self.held

    @property
    def count(self) -> int:
        """Live subscribers (one per wire group they are in) plus held ones: O(1)."""
        return self.n

    @property
    def position(self) -> Position:
        return Position(self.offset, self.epoch)
