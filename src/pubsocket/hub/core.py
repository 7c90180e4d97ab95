"""The hub: topics -> local subscribers, fan-out, and the merge of history with live delivery.

Every publish, local or remote, goes to the broker; the broker calls `Hub._deliver`,
which encodes the publication once per codec in use, frames it once per wire
(`hub.wire`: the connection's codec x the transport's framer), and hands the same
bytes to each subscriber's `deliver()` without awaiting (slow consumers are the
transport's business, see docs/design.md). A topic exists only while it has local
subscribers; a publish to a topic nobody here follows creates no hub state.

Positions: for topics with history, the hub tracks the last offset it fanned out. A
publication that is not the next one (a hole: the broker link broke, or Redis lost
messages) is held back while the hub reads the hole from history; what history cannot
fill is announced to every subscriber with a gap notice, never skipped silently. A
subscriber that asks to resume after a position is held (its live publications buffered)
while the hub reads history, then gets the replay and the buffer with no gap and no
duplicate, or ``recovered=False`` (`hub.recovery`).

Publishing and history pages are in `hub.publishing`; the control channel,
`disconnect_user` and `unsubscribe_user` in `hub.control`; the other nodes and the
`channels` survey in `hub.cluster`.
The hub has no socket, protocol or event-loop transport code: it sees wires and
`Subscriber.deliver(frame)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

from ..auth import Authorizer
from ..auth.namespaces import NamespacePolicy
from ..brokers import Broker, broker_from_url
from ..brokers.base import NO_HISTORY, HistoryPage, HistoryPolicy, Position, Publication
from ..codecs import PLAIN
from ..config import Settings
from ..errors import BrokerError, BrokerUnavailable, ConfigError
from ..protocol import SubscribeResult
from .cluster import Cluster
from .control import CONTROL_TOPIC, PRESENCE_PREFIX, Control, Registry
from .delivery import Delivery
from .heartbeat import Heartbeat
from .policy import HistoryRules
from .presence import PresenceHooks
from .publishing import Publishing, publisher_of
from .recovery import recover, resolve
from .relay import CommandRelay
from .stats import HubStats, Introspection
from .topic import Subscriber, Tally, Topic
from .wire import RAW, Wire

log = logging.getLogger("pubsocket.hub")

PLAIN_RAW = RAW(PLAIN)  # the default wire: plain payloads, unframed (tests, embedding)


class Hub(Delivery, Control, Introspection, Publishing):
    """Pub/sub across this process's connections, scaled out through a `Broker`."""

    def __init__(self, settings: Settings | None = None, broker: Broker | None = None
                 ) -> None:
        self.settings = settings or Settings()
        self.rules = HistoryRules.from_settings(self.settings)
        self._broker = broker
        self._topics: dict[str, Topic] = {}
        self._tally = Tally()  # (subscriber, topic) pairs, kept by the topics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.stats = HubStats()
        # pubsub(authorize=...) sets the app's hook; a Centrifugo config file's namespaces
        # apply before it (auth/namespaces.py), and say where join/leave is on.
        namespaces = (NamespacePolicy(self.settings.channel_options,
                                      insecure=self.settings.centrifugo_insecure)
                      if self.settings.channel_options else None)
        self.authorizer = Authorizer(None, namespaces)
        self.registry = Registry()  # local sessions by user, for server-side control
        self.presence = PresenceHooks(self.settings.presence, self.settings.presence_events,
                                      namespaces)
        self.heartbeat = Heartbeat(self.settings.heartbeat)  # v1 pings: one sweep per hub
        # POSTed commands of HTTP-stream sessions, to whichever node holds the session.
        self.relay = CommandRelay(lambda: self.broker, max_bytes=self.settings.max_message_size)
        # The other nodes (registry) and the `channels` survey, for the server API.
        self.cluster = Cluster(self)

    @property
    def broker(self) -> Broker:
        """The broker, made from `settings.broker` on first use."""
        if self._broker is None:
            self._broker = broker_from_url(
                self.settings.broker, meta_ttl=self.settings.history_meta_ttl,
                max_bytes=self.settings.history_max_bytes,
                topic_max_bytes=self.settings.history_topic_max_bytes,
                idempotency_ttl=self.settings.idempotency_ttl)
        return self._broker

    async def start(self) -> None:
        """Start the broker's delivery stream into this hub."""
        if self.settings.workers > 1 and not self.broker.shared:
            raise ConfigError("--workers > 1 needs a shared broker (PUBSOCKET_BROKER=redis://...)")
        self._loop = asyncio.get_running_loop()
        await self.broker.start(self._deliver, self._resync)
        await self.relay.start()
        if self.presence.patterns and self.presence.store is None:
            self.presence.store = self._presence_store()
            await self.presence.store.start()
        if not self.broker.subscribe_nowait(CONTROL_TOPIC):
            # In the background: start() must not wait on (or fail for) an absent broker.
            self._spawn(self._subscribe_control())
        self.cluster.start()

    async def close(self) -> None:
        """Stop the broker. Subscribers are not closed here (the server does that)."""
        for entry in self._topics.values():
            entry.detach()
        self._topics.clear()
        for task in list(self._background):
            task.cancel()
        await self.presence.close()
        await self.cluster.close()
        await self.relay.close()
        if self._broker is not None:
            await self._broker.close()

    def history_policy(self, topic: str) -> HistoryPolicy:
        """What the broker keeps of `topic` (settings and `pubsub(history=...)` rules)."""
        return self.rules.policy(topic)

    # -- subscriptions --------------------------------------------------------------
    def subscribe_nowait(self, sub: Subscriber, topic: str, wire: Wire = PLAIN_RAW,
                         since: Position | None = None
                         ) -> SubscribeResult | Awaitable[SubscribeResult]:
        """`subscribe` done inline when no broker I/O is needed, else the awaitable that
        finishes it. Either way the subscriber is live when the result is in hand: the
        caller sends the reply and `result.replay` before yielding to the event loop."""
        entry = self._topics.get(topic)
        if entry is None and self.broker.subscribe_nowait(topic) and (
                not self.presence.events_for(topic)
                or self.broker.subscribe_nowait(PRESENCE_PREFIX + topic)):
            entry = self._topics[topic] = Topic(self._tally)
            if not self._position_nowait(topic, entry):
                entry.ready = asyncio.get_running_loop().create_future()
                return self._finish_first(sub, topic, wire, since, entry, subscribed=True)
        if entry is None or entry.ready is not None:
            return self.subscribe(sub, topic, wire, since)
        result = self._join_nowait(sub, topic, wire, since, entry)
        return result if result is not None else self._join(sub, topic, wire, since, entry)

    async def subscribe(self, sub: Subscriber, topic: str, wire: Wire = PLAIN_RAW,
                        since: Position | None = None) -> SubscribeResult:
        """Add `sub` to `topic` (idempotent) and return where its stream starts. Raises
        `BrokerUnavailable` when the broker cannot confirm the first local subscription
        or cannot read the position; the subscriber is then not subscribed."""
        entry = self._topics.get(topic)
        if entry is None:
            entry = self._topics[topic] = Topic(self._tally)
            entry.ready = asyncio.get_running_loop().create_future()
            return await self._finish_first(sub, topic, wire, since, entry, subscribed=False)
        if entry.ready is not None:
            entry.waiting += 1
            try:
                await asyncio.shield(entry.ready)
            finally:
                entry.waiting -= 1
            if self._topics.get(topic) is not entry:  # failed, or emptied meanwhile
                return await self.subscribe(sub, topic, wire, since)
        result = self._join_nowait(sub, topic, wire, since, entry)
        return result if result is not None else await self._join(sub, topic, wire, since,
                                                                   entry)

    async def _finish_first(self, sub: Subscriber, topic: str, wire: Wire,
                            since: Position | None, entry: Topic,
                            subscribed: bool) -> SubscribeResult:
        """The first local subscriber of `topic`: subscribe the broker, read the position.

        Others subscribing meanwhile wait on `entry.ready`: on a broker failure they get
        the same error; if this caller was cancelled they start over on their own."""
        assert entry.ready is not None
        ready = entry.ready
        entry.backlog = []  # live publications wait until the position is known
        try:
            if not subscribed:
                await self.broker.subscribe(topic)
                subscribed = True
                if self.presence.events_for(topic):
                    await self.broker.subscribe(PRESENCE_PREFIX + topic)
            if self.history_policy(topic).enabled:
                page = await self.broker.history(topic, None, 0)
                entry.offset, entry.epoch = page.position.offset, page.position.epoch
        except BaseException as exc:
            entry.ready = entry.backlog = None
            if self._topics.get(topic) is entry:
                del self._topics[topic]
                entry.detach()
            if subscribed:
                self._spawn(self._broker_unsubscribe(topic))
            if not isinstance(exc, Exception):
                ready.set_result(None)  # waiters find the topic gone and start over
                raise
            error = exc if isinstance(exc, BrokerError) else BrokerUnavailable(
                "broker subscription failed")
            ready.set_exception(error)
            ready.exception()  # retrieved here: each waiter raises its own copy
            if error is exc:
                raise
            raise error from exc
        entry.ready = None
        self._release_backlog(topic, entry)
        ready.set_result(None)
        result = self._join_nowait(sub, topic, wire, since, entry)
        return result if result is not None else await self._join(sub, topic, wire, since,
                                                                   entry)

    def _position_nowait(self, topic: str, entry: Topic) -> bool:
        if not self.history_policy(topic).enabled:
            return True
        page = self.broker.history_nowait(topic, None, 0)
        if page is None:
            return False
        entry.offset, entry.epoch = page.position.offset, page.position.epoch
        return True

    def _join_nowait(self, sub: Subscriber, topic: str, wire: Wire,
                     since: Position | None, entry: Topic) -> SubscribeResult | None:
        """Add `sub` to a positioned topic inline, or None when recovery needs a read.

        Answered without reading history: no `since`, or no history for the topic; `since`
        is where the topic stands (recovered, nothing missed); another epoch, a position
        ahead of this node's stream, or one further behind than history holds
        (recovered: false)."""
        position = entry.position
        policy = self.history_policy(topic)
        if since is None or not policy.enabled:
            entry.add(sub, wire)
            if since is not None:
                self._count_recovery(False)
            return SubscribeResult(position, False)
        since = resolve(since, position.epoch)  # Centrifuge's empty epoch: any
        behind = position.offset - since.offset
        cap = self.settings.history_reply_limit
        if since.epoch != position.epoch or not 0 <= behind <= policy.size or (
                cap and behind > cap):
            entry.add(sub, wire)
            return self._count(SubscribeResult(position, False))
        if not behind:
            entry.add(sub, wire)
            return self._count(SubscribeResult(position, True))
        page = self.broker.history_nowait(topic, since.offset, behind,
                                          self.settings.history_reply_bytes)
        if page is None:
            return None
        entry.add(sub, wire)
        return self._count(self._recover(since, page, (), position))

    async def _join(self, sub: Subscriber, topic: str, wire: Wire, since: Position | None,
                    entry: Topic) -> SubscribeResult:
        """Recovery through broker I/O: hold `sub`, read history, merge, go live."""
        assert since is not None
        hold = entry.hold(sub)
        try:
            page = await self.broker.history(topic, since.offset, self._replay_limit(topic),
                                             self.settings.history_reply_bytes)
        except BaseException:
            if entry.held.get(sub) is hold:
                entry.unhold(sub)
            if self._topics.get(topic) is entry and entry.empty:
                del self._topics[topic]
                entry.detach()
                self._spawn(self._broker_unsubscribe(topic))
            raise
        if entry.unhold(sub) is not hold or self._topics.get(topic) is not entry:
            raise BrokerError("unsubscribed while recovering")
        entry.add(sub, wire)
        return self._count(self._recover(since, page, hold.pubs, entry.position, hold.gap))

    def _replay_limit(self, topic: str) -> int:
        size, cap = self.history_policy(topic).size, self.settings.history_reply_limit
        return min(size, cap) if cap else size

    def _recover(self, since: Position, page: HistoryPage, live: Sequence[Publication],
                 upto: Position, gap: Position | None = None) -> SubscribeResult:
        """`recover` within the reply caps: a replay past them is recovered: false."""
        return recover(since, page, live, upto, gap,
                       max_count=self.settings.history_reply_limit,
                       max_bytes=self.settings.history_reply_bytes)

    def _count(self, result: SubscribeResult) -> SubscribeResult:
        self._count_recovery(result.recovered)
        return result

    def _count_recovery(self, recovered: bool) -> None:
        if recovered:
            self.stats.recoveries += 1
        else:
            self.stats.recovery_failures += 1

    def unsubscribe_nowait(self, sub: Subscriber, topic: str) -> None:
        """`unsubscribe` without waiting: delivery to `sub` stops now; a broker
        unsubscribe that needs I/O runs in the background (in call order)."""
        if self._remove(sub, topic) and not (
                self.broker.unsubscribe_nowait(topic) and (
                    not self.presence.events_for(topic)
                    or self.broker.unsubscribe_nowait(PRESENCE_PREFIX + topic))):
            self._spawn(self._broker_unsubscribe(topic))

    async def unsubscribe(self, sub: Subscriber, topic: str) -> None:
        """Remove `sub` from `topic`; the topic's state goes with its last subscriber."""
        if self._remove(sub, topic):
            await self._broker_unsubscribe(topic)

    def _remove(self, sub: Subscriber, topic: str) -> bool:
        """Drop `sub` from `topic`; True when that emptied (and so deleted) the topic."""
        entry = self._topics.get(topic)
        if entry is None:
            return False
        entry.discard(sub)
        if not entry.empty or entry.ready is not None or entry.waiting:
            return False
        del self._topics[topic]
        entry.detach()
        return True

    async def _broker_unsubscribe(self, topic: str) -> None:
        try:
            await self.broker.unsubscribe(topic)
            if self.presence.events_for(topic):
                await self.broker.unsubscribe(PRESENCE_PREFIX + topic)
        except BrokerError:
            log.warning("broker unsubscribe failed; it will be dropped on reconnect")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

__all__ = ["NO_HISTORY", "Hub", "HubStats", "Subscriber", "publisher_of"]
