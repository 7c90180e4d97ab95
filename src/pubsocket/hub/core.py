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

The control channel, `disconnect_user` and `unsubscribe_user` are in `hub.control`; the
other nodes and the `channels` survey in `hub.cluster`.
The hub has no socket, protocol or event-loop transport code: it sees wires and
`Subscriber.deliver(frame)`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

import orjson

from ..auth import Action, Authorizer, Principal
from ..auth.namespaces import NamespacePolicy
from ..brokers import Broker, broker_from_url
from ..brokers.base import NO_HISTORY, HistoryPage, HistoryPolicy, Position, Publication, Publisher
from ..codecs import PLAIN
from ..config import Settings
from ..errors import BrokerError, BrokerUnavailable, ConfigError
from ..protocol import SubscribeResult
from . import operations
from .cluster import Cluster
from .control import CONTROL_TOPIC, PRESENCE_PREFIX, Control, Registry
from .delivery import Delivery
from .heartbeat import Heartbeat
from .policy import HistoryRules
from .presence import PresenceHooks
from .recovery import recover, resolve
from .relay import CommandRelay
from .stats import HubStats, Introspection
from .topic import Subscriber, Tally, Topic
from .wire import RAW, Wire

log = logging.getLogger("pubsocket.hub")

PLAIN_RAW = RAW(PLAIN)  # the default wire: plain payloads, unframed (tests, embedding)


def publisher_of(principal: Principal) -> Publisher | None:
    """The publisher a publish on behalf of `principal` carries: its client id, `sub` and
    ``info`` claim (JSON, copied to its exact size: history keeps it). None for the API
    key: it is the app's backend speaking as the server (like a server-side publish),
    and its fixed ``sub`` names no user. None for an anonymous connection too: there is
    no one to attest, only a random connection id (and every delivery would carry it:
    a Centrifuge push grows by half)."""
    if principal.is_api_key or principal.sub is None:
        return None
    info = b"" if principal.info is None else bytes(memoryview(orjson.dumps(principal.info)))
    return Publisher(principal.client_id, principal.sub, info)


class Hub(Delivery, Control, Introspection):
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

    # -- publishing and history -------------------------------------------------------
    async def publish(self, topic: str, data: Any, *,
                      principal: Principal | None = None) -> Publication:
        """Publish `data` (JSON-serializable) to `topic` on every node; return the
        publication with its position. With `principal`, on its behalf: `Forbidden`
        (`PermissionDenied`) unless the topic permissions allow it, and the publication
        carries `publisher_of(principal)`. Raises `InvalidTopic` / `BadRequest` (both
        ValueErrors) for an invalid topic or data, `BrokerUnavailable` when the broker
        could not take the message. The checks are the operations layer's
        (`hub.operations`), as for every other front door."""
        name = operations.check_topic(topic)
        await operations.authorize(self.authorizer, principal, Action.PUBLISH, name)
        payload = operations.encode(data)
        publisher = None if principal is None else publisher_of(principal)
        return await self.publish_payload(name, payload, publisher)

    async def publish_payload(self, topic: str, payload: bytes,
                              publisher: Publisher | None = None) -> Publication:
        """Publish an already JSON-encoded `payload` (the caller validated `topic`)."""
        result = self.publish_payload_nowait(topic, payload, publisher)
        return result if isinstance(result, Publication) else await result

    def publish_payload_nowait(self, topic: str, payload: bytes,
                               publisher: Publisher | None = None
                               ) -> Publication | asyncio.Future[Publication] | Awaitable[
                                   Publication]:
        """The publication when the broker took it inline; an `asyncio.Future` when the
        broker queued it in order (consecutive calls may be in flight together); any
        other awaitable must be awaited before the next publish to keep order.
        `publisher` (None: a server-side publish) travels with the publication."""
        self.stats.published += 1
        policy = self.rules.policy(topic)  # `history_policy`, one call fewer: hot path
        broker = self._broker or self.broker  # the property only until it is made
        result = broker.publish_nowait(topic, payload, policy, publisher)
        return broker.publish(topic, payload, policy, publisher) if result is None else result

    def publish_threadsafe(self, topic: str, data: Any) -> concurrent.futures.Future[Publication]:
        """`publish` from another thread; the returned future carries its outcome."""
        if self._loop is None:
            raise RuntimeError("the hub is not started")
        return asyncio.run_coroutine_threadsafe(self.publish(topic, data), self._loop)

    def reply_limit(self, limit: int) -> int:
        """`limit` within `Settings.history_reply_limit` (publications per history reply)."""
        cap = self.settings.history_reply_limit
        return min(limit, cap) if cap else limit

    def history_nowait(self, topic: str, since: int | None, limit: int) -> HistoryPage | None:
        """`history` when the broker answers inline, else None."""
        if not self.history_policy(topic).enabled:
            return HistoryPage([], Position(0, ""))
        return self.broker.history_nowait(topic, since, self.reply_limit(limit),
                                          self.settings.history_reply_bytes)

    async def history(self, topic: str, since: int | None, limit: int) -> HistoryPage:
        """Kept publications of `topic` after offset `since`, oldest first, with the
        topic's position: a page for a client, so at most `reply_limit(limit)`
        publications and `Settings.history_reply_bytes` bytes (a shorter page when the
        next publication would pass it; never empty when something is kept after
        `since`). Raises `BrokerUnavailable`."""
        page = self.history_nowait(topic, since, limit)
        return page if page is not None else await self.broker.history(
            topic, since, self.reply_limit(limit), self.settings.history_reply_bytes)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

__all__ = ["NO_HISTORY", "Hub", "HubStats", "Subscriber", "publisher_of"]
