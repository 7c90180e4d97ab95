"""The hub: topics -> local subscribers, and the fan-out of every broker delivery.

Every publish, local or remote, goes to the broker; the broker calls `Hub._deliver`, which
frames the payload once per wire mode and hands the same bytes to each subscriber's
`deliver()` without awaiting (slow consumers are the transport's business, see
docs/design.md). A topic exists only while it has local subscribers; a publish to a topic
nobody follows creates no state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..brokers import Broker, broker_from_url
from ..config import Settings
from ..errors import BrokerError, BrokerUnavailable, ConfigError
from ..protocol import encode_envelope, text_frame, valid_topic

log = logging.getLogger("pubsocket.hub")


class Subscriber(Protocol):
    """What the hub delivers to. `deliver` must not block, raise, or call into the hub."""

    def deliver(self, frame: bytes) -> None: ...


@dataclass(slots=True)
class _Topic:
    raw: dict[Subscriber, None] = field(default_factory=dict)  # plain mode: json(data)
    env: dict[Subscriber, None] = field(default_factory=dict)  # pubsocket.v1 envelopes
    ready: asyncio.Future[None] | None = None  # resolved once the broker confirmed


@dataclass(slots=True)
class HubStats:
    """Counters since start (read by /metrics)."""

    published: int = 0  # messages handed to the broker by this node
    received: int = 0  # messages the broker delivered to this node
    deliveries: int = 0  # frames queued to local subscribers
    bytes_out: int = 0  # frame bytes queued to local subscribers


class Hub:
    """Pub/sub across this process's connections, scaled out through a `Broker`."""

    def __init__(self, settings: Settings | None = None, broker: Broker | None = None) -> None:
        self.settings = settings or Settings()
        self._broker = broker
        self._topics: dict[str, _Topic] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.stats = HubStats()

    @property
    def broker(self) -> Broker:
        """The broker, made from `settings.broker` on first use."""
        if self._broker is None:
            self._broker = broker_from_url(self.settings.broker)
        return self._broker

    async def start(self) -> None:
        """Start the broker's delivery stream into this hub."""
        if self.settings.workers > 1 and not self.broker.shared:
            raise ConfigError("--workers > 1 needs a shared broker (PUBSOCKET_BROKER=redis://...)")
        self._loop = asyncio.get_running_loop()
        await self.broker.start(self._deliver)

    async def close(self) -> None:
        """Stop the broker. Subscribers are not closed here (the server does that)."""
        self._topics.clear()
        if self._broker is not None:
            await self._broker.close()

    # -- subscriptions --------------------------------------------------------------
    async def subscribe(self, sub: Subscriber, topic: str, envelope: bool = False) -> None:
        """Add `sub` to `topic` (idempotent). Raises `BrokerUnavailable` if the first
        local subscription of `topic` cannot be confirmed by the broker."""
        entry = self._topics.get(topic)
        if entry is None:
            entry = self._topics[topic] = _Topic()
            entry.ready = asyncio.get_running_loop().create_future()
            (entry.env if envelope else entry.raw)[sub] = None
            try:
                await self.broker.subscribe(topic)
            except BaseException as exc:
                if self._topics.get(topic) is entry:
                    del self._topics[topic]
                entry.ready.set_exception(BrokerUnavailable("broker subscription failed"))
                entry.ready.exception()  # mark retrieved: waiters get their own error
                if isinstance(exc, BrokerError) or not isinstance(exc, Exception):
                    raise  # broker errors as they are; cancellation stays a cancellation
                raise BrokerUnavailable("broker subscription failed") from exc
            entry.ready.set_result(None)
            return
        (entry.env if envelope else entry.raw)[sub] = None
        if entry.ready is not None and not entry.ready.done():
            try:
                await asyncio.shield(entry.ready)
            except BaseException:
                # Not subscribed after all (broker failure or cancellation): the caller
                # will not release what it never got, so undo it here.
                entry.raw.pop(sub, None)
                entry.env.pop(sub, None)
                raise

    def subscribe_nowait(self, sub: Subscriber, topic: str,
                         envelope: bool = False) -> Awaitable[None] | None:
        """`subscribe` done inline when no broker I/O is needed (None), else the awaitable
        that finishes it (same errors as `subscribe`)."""
        entry = self._topics.get(topic)
        if entry is not None and (entry.ready is None or entry.ready.done()):
            (entry.env if envelope else entry.raw)[sub] = None
            return None
        if entry is None and self.broker.subscribe_nowait(topic):
            entry = self._topics[topic] = _Topic()
            (entry.env if envelope else entry.raw)[sub] = None
            return None
        return self.subscribe(sub, topic, envelope)

    def unsubscribe_nowait(self, sub: Subscriber, topic: str) -> None:
        """`unsubscribe` without waiting: delivery to `sub` stops now; a broker
        unsubscribe that needs I/O runs in the background (in call order)."""
        if self._remove(sub, topic) and not self.broker.unsubscribe_nowait(topic):
            task = asyncio.get_running_loop().create_task(self._broker_unsubscribe(topic))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def unsubscribe(self, sub: Subscriber, topic: str) -> None:
        """Remove `sub` from `topic`; the topic's state goes with its last subscriber."""
        if self._remove(sub, topic):
            await self._broker_unsubscribe(topic)

    def _remove(self, sub: Subscriber, topic: str) -> bool:
        """Drop `sub` from `topic`; True when that emptied (and so deleted) the topic."""
        entry = self._topics.get(topic)
        if entry is None:
            return False
        entry.raw.pop(sub, None)
        entry.env.pop(sub, None)
        if entry.raw or entry.env:
            return False
        del self._topics[topic]
        return True

    async def _broker_unsubscribe(self, topic: str) -> None:
        try:
            await self.broker.unsubscribe(topic)
        except BrokerError:
            log.warning("broker unsubscribe failed; it will be dropped on reconnect")

    # -- publishing -----------------------------------------------------------------
    async def publish(self, topic: str, data: Any) -> None:
        """Publish `data` (JSON-serializable) to `topic` on every node.

        Raises ValueError for an invalid topic or data, `BrokerUnavailable` when the
        broker could not take the message.
        """
        if not valid_topic(topic):
            raise ValueError("invalid topic")
        try:
            payload = orjson.dumps(data)
        except TypeError as exc:
            raise ValueError("data is not JSON-serializable") from exc
        await self.publish_payload(topic, payload)

    async def publish_payload(self, topic: str, payload: bytes) -> None:
        """Publish an already JSON-encoded `payload` (the caller validated `topic`)."""
        self.stats.published += 1
        await self.broker.publish(topic, payload)

    def publish_payload_nowait(self, topic: str, payload: bytes) -> Awaitable[None] | None:
        """`publish_payload` done inline when the broker needs no I/O (None), else the
        awaitable that finishes it."""
        self.stats.published += 1
        if self.broker.publish_nowait(topic, payload):
            return None
        return self.broker.publish(topic, payload)

    def publish_threadsafe(self, topic: str, data: Any) -> concurrent.futures.Future[None]:
        """`publish` from another thread; the returned future carries its outcome."""
        if self._loop is None:
            raise RuntimeError("the hub is not started")
        return asyncio.run_coroutine_threadsafe(self.publish(topic, data), self._loop)

    def _deliver(self, topic: str, payload: bytes) -> None:
        """The one delivery path: frame once per wire mode, queue to every subscriber."""
        entry = self._topics.get(topic)
        stats = self.stats
        stats.received += 1
        if entry is None:
            return
        if entry.raw:
            frame = text_frame(payload)
            for sub in entry.raw:
                sub.deliver(frame)
            stats.deliveries += len(entry.raw)
            stats.bytes_out += len(frame) * len(entry.raw)
        if entry.env:
            frame = text_frame(encode_envelope(topic, payload))
            for sub in entry.env:
                sub.deliver(frame)
            stats.deliveries += len(entry.env)
            stats.bytes_out += len(frame) * len(entry.env)

    # -- introspection --------------------------------------------------------------
    @property
    def topic_count(self) -> int:
        """Topics with at least one local subscriber."""
        return len(self._topics)

    def subscriber_count(self, topic: str) -> int:
        """Local subscribers of `topic`."""
        entry = self._topics.get(topic)
        return 0 if entry is None else len(entry.raw) + len(entry.env)

    @property
    def subscription_count(self) -> int:
        """Local (subscriber, topic) pairs."""
        return sum(len(e.raw) + len(e.env) for e in self._topics.values())
