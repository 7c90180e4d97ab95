"""The delivery half of the hub: in-order fan-out, holes filled from history, gap notices.

`Delivery` is mixed into `Hub`; it needs the hub's topics, stats and broker.
Every publication the broker delivers passes `_deliver`: the next offset of a topic is
fanned out at once; a hole holds later publications back while `_fill` reads history;
what history cannot fill is announced with `_gap` before delivery goes on. After the
broker link came back (`_resync`), topics with history are filled the same way and
subscribers of topics without history are told they may have lost publications (`_lost`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from ..brokers.base import HistoryPolicy, Position, Publication
from ..codecs import Codec
from ..errors import BrokerError, CloseCode
from .cluster import REPLY_MARK, Cluster
from .control import CONTROL_TOPIC, PRESENCE_PREFIX, Registry, decode
from .presence import decode_event
from .recovery import merge
from .relay import CommandRelay
from .topic import BatchSubscriber, Subscriber, Topic
from .wire import MAX_BATCH, Batch, Wire

if TYPE_CHECKING:
    from ..brokers import Broker
    from .core import HubStats

log = logging.getLogger("pubsocket.hub")

MAX_BUFFERED = 10_000  # live publications held per topic or subscriber during a read
MAX_FILL_READS = 10  # history reads to fill one hole before announcing the rest as a gap


class Delivery:
    """Fan-out and gap handling over `self._topics` (see the module docstring)."""

    _topics: dict[str, Topic]
    stats: HubStats
    registry: Registry
    relay: CommandRelay
    cluster: Cluster

    @property
    def broker(self) -> Broker:
        raise NotImplementedError

    def history_policy(self, topic: str) -> HistoryPolicy:
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    # -- delivery -------------------------------------------------------------------
    def _deliver(self, topic: str, pub: Publication) -> None:
        """The one delivery path (the broker calls it): in order, or hold and fill."""
        self.stats.received += 1
        if topic[0] == "$":  # control and presence channels: never a client topic
            self._internal(topic, pub.payload)
            return
        entry = self._topics.get(topic)
        if entry is None:
            return
        if pub.offset == 0:
            self._fanout(topic, entry, pub)
        elif entry.backlog is not None:
            entry.backlog.append(pub)
            if len(entry.backlog) > MAX_BUFFERED:
                self._overflow(topic, entry)
        elif pub.epoch == entry.epoch and pub.offset == entry.offset + 1:
            entry.offset = pub.offset
            self._fanout(topic, entry, pub)
        elif pub.epoch == entry.epoch and pub.offset <= entry.offset:
            self.stats.duplicates += 1
        elif not entry.epoch:  # never positioned (history was off for it): adopt
            entry.offset, entry.epoch = pub.offset, pub.epoch
            self._fanout(topic, entry, pub)
        elif pub.epoch == entry.epoch:
            entry.backlog = [pub]  # a hole: read it from history before going on
            self._spawn(self._fill(topic, entry))
        else:  # a new epoch: the topic's history was lost, nothing can fill the hole
            self._gap(topic, entry, Position(pub.offset - 1, pub.epoch))
            entry.offset, entry.epoch = pub.offset, pub.epoch
            self._fanout(topic, entry, pub)

    def _internal(self, channel: str, payload: bytes) -> None:
        if channel == CONTROL_TOPIC:
            command = decode(payload)
            if command is not None and not self.cluster.apply(command):
                self.registry.run(command)
            return
        if channel == self.relay.topic:  # a command routed here (`hub.relay`)
            if payload[:1] == REPLY_MARK:  # or an answer to this node's survey
                self.cluster.reply(payload[1:])
            else:
                self.relay.receive(payload)
            return
        topic = channel.removeprefix(PRESENCE_PREFIX)
        entry = self._topics.get(topic)
        # Only to subscribers allowed presence on the topic (`Hub.watch`): a push carries
        # the user and its `info`, which is what the presence permission guards.
        if entry is None or not entry.watchers or (event := decode_event(payload)) is None:
            return
        kind, client, edge = event
        encoded: dict[Codec, bytes | None] = {}  # each codec encodes once
        frames: dict[Wire, bytes | None] = {}  # each wire frames once
        for sub, wire in entry.watchers.items():
            if wire not in frames:
                codec = wire.codec
                if codec not in encoded:
                    # Not the user's first/last connection: only per-client codecs say so.
                    encoded[codec] = (None if not (edge or codec.join_leave_per_client)
                                      else codec.join(topic, client) if kind == "join"
                                      else codec.leave(topic, client))
                notice = encoded[codec]
                frames[wire] = None if notice is None else wire.frame(notice)
            frame = frames[wire]
            if frame is not None:
                sub.deliver(frame)

    @staticmethod
    def _notify(entry: Topic, notice: Callable[[Codec], bytes | None]) -> None:
        """Send each live subscriber of `entry` the codec's `notice` (None: nothing),
        encoded once per codec and framed once per wire."""
        encoded: dict[Codec, bytes | None] = {}
        for wire, subs in entry.subs.items():
            codec = wire.codec
            payload = encoded[codec] = (encoded[codec] if codec in encoded
                                        else notice(codec))
            if payload is not None:
                frame = wire.frame(payload)
                for sub in subs:
                    sub.deliver(frame)

    def watch(self, sub: Subscriber, topic: str, wire: Wire) -> None:
        """Let `sub`, a live subscriber of `topic`, receive its presence join/leave
        pushes through `wire` (the caller checked the presence permission). Ends with
        the subscription."""
        entry = self._topics.get(topic)
        if entry is None or not any(sub in group for group in entry.subs.values()):
            return
        if entry.watchers is None:
            entry.watchers = {}
        entry.watchers[sub] = wire

    def unwatch(self, sub: Subscriber, topic: str) -> None:
        """Stop `sub`'s join/leave pushes on `topic` (the subscription goes on)."""
        entry = self._topics.get(topic)
        if entry is not None and entry.watchers is not None:
            entry.watchers.pop(sub, None)

    def _fanout(self, topic: str, entry: Topic, pub: Publication) -> None:
        """Each codec in use encodes `pub` once, each wire frames that once, and every
        subscriber of the wire gets the same bytes. On a ``batched`` wire the frame joins
        the group's open `Batch` of this tick when there is one (O(1), whatever the
        number of subscribers), else a new batch is queued to each subscriber."""
        stats = self.stats
        encoded: dict[Codec, bytes] = {}
        for wire, subs in entry.subs.items():
            codec = wire.codec
            payload = encoded.get(codec)
            if payload is None:
                payload = encoded[codec] = codec.publication(topic, pub)
            frame = wire.frame(payload)
            n = len(subs)
            stats.deliveries += n
            stats.bytes_out += len(frame) * n
            if not wire.batched:
                for sub in subs:
                    sub.deliver(frame)
                continue
            batches = entry.batches
            if batches is None:
                batches = entry.batches = {}
            batch = batches.get(wire)
            if batch is not None and batch.open and len(batch) < MAX_BATCH:
                batch.append(frame)
                continue
            batch = batches[wire] = Batch(frame)
            for sub in cast("dict[BatchSubscriber, None]", subs):
                sub.deliver_batch(batch)
        if entry.held:  # subscribers recovering: they get it after their replay
            for hold in entry.held.values():
                hold.add(pub, MAX_BUFFERED)

    def _gap(self, topic: str, entry: Topic, position: Position) -> None:
        """Tell every subscriber of `topic` that live delivery skipped to `position`."""
        self.stats.gaps += 1
        log.warning("gap on a topic: publications could not be filled from history")
        self._notify(entry, lambda codec: codec.gap(topic, position))
        for hold in entry.held.values():
            hold.mark_gap(position)

    def _resync(self) -> None:
        """The broker link broke and came back: fill each history topic from its position;
        tell the subscribers of every topic without one that they may have lost some."""
        lost = 0
        for topic, entry in list(self._topics.items()):
            if entry.ready is not None:
                continue  # its first subscribe is still waiting: nothing delivered yet
            if not entry.epoch:
                lost += 1
                self._lost(topic, entry)
            elif entry.backlog is None:
                entry.backlog = []
                self._spawn(self._fill(topic, entry))
        if lost:
            log.warning("broker link was lost: subscribers of %d topics without history "
                        "were told they may have missed publications", lost)

    def _lost(self, topic: str, entry: Topic) -> None:
        """Publications of `topic` (no history, no positions) may have been missed while
        the link was down; which and how many is unknown. Never silent: each subscriber
        gets its protocol's notice, or is closed (1012) when the protocol has none."""
        self.stats.gaps += 1
        for wire, subs in list(entry.subs.items()):
            notice = wire.codec.lost(topic)
            if notice is None:
                for sub in list(subs):
                    sub.close_nowait(CloseCode.SERVICE_RESTART, "broker link lost")
                continue
            frame = wire.frame(notice)
            for sub in subs:
                sub.deliver(frame)

    async def _fill(self, topic: str, entry: Topic) -> None:
        """Read the hole after `entry.offset` from history, then deliver the buffered live
        publications; every hole history cannot fill is announced with a gap notice."""
        limit = max(self.history_policy(topic).size, 1)
        for _ in range(MAX_FILL_READS):
            try:
                page = await self.broker.history(topic, entry.offset, limit)
            except BrokerError:
                page = None  # the hole is announced below, live delivery goes on
            if self._topics.get(topic) is not entry or entry.backlog is None:
                return  # the topic went away, or an overflow gave up on the hole
            if page is None:
                break
            if page.position.epoch != entry.epoch:  # history lost meanwhile
                self._gap(topic, entry, page.position)
                lost = entry.epoch
                entry.offset, entry.epoch = page.position.offset, page.position.epoch
                entry.backlog = [p for p in entry.backlog if p.epoch != lost]
                break
            pubs, top = page.publications, page.position.offset
            last = pubs[-1].offset if pubs else entry.offset
            if len(pubs) >= limit and last < top:  # more to read: replay what is certain
                self._replay(topic, entry, [*pubs, *(p for p in entry.backlog
                                                     if p.offset <= last)])
                continue
            # The page reaches the top: everything up to it is known now. What is still
            # missing below the top expired from history: announce it at once.
            self._replay(topic, entry, [*pubs, *(p for p in entry.backlog if p.offset <= top)])
            if entry.offset < top:
                self._gap(topic, entry, Position(top, entry.epoch))
                entry.offset = top
            break
        self._release_backlog(topic, entry)

    def _replay(self, topic: str, entry: Topic, pubs: list[Publication]) -> None:
        """Fan out `pubs` after `entry.offset` in order; announce each hole between them."""
        for pub in merge(entry.offset, entry.epoch, pubs):
            if pub.offset != entry.offset + 1:
                self._gap(topic, entry, Position(pub.offset - 1, pub.epoch))
            entry.offset = pub.offset
            self._fanout(topic, entry, pub)

    def _release_backlog(self, topic: str, entry: Topic) -> None:
        """Deliver what was held back while reading; other epochs go through `_deliver`."""
        backlog, entry.backlog = entry.backlog or [], None
        self._replay(topic, entry, backlog)
        for pub in backlog:
            if pub.epoch != entry.epoch:
                self.stats.received -= 1  # counted once already
                self._deliver(topic, pub)

    def _overflow(self, topic: str, entry: Topic) -> None:
        """Too much arrived while reading history: announce the hole and go on live."""
        backlog, entry.backlog = entry.backlog or [], None
        last = backlog[-1]
        self._gap(topic, entry, Position(last.offset - 1, last.epoch))
        entry.offset, entry.epoch = last.offset, last.epoch
        self._fanout(topic, entry, last)
