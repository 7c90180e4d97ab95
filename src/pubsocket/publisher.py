"""Publish from anywhere: `AsyncPublisher` and the synchronous `Publisher`.

A Django view, a Celery task or a script publishes straight to the broker the nodes
share (``redis://...``), exactly as a node's ``hub.publish`` does: the same broker code
and publish script, so the publication gets the topic's next offset, is kept in history
by the topic's policy and reaches every node's subscribers (and their recovery)::

    from pubsocket import Publisher

    publisher = Publisher("redis://127.0.0.1:6379/0")   # or Publisher(): PUBSOCKET_BROKER
    offset = publisher.publish("chat:lobby", {"text": "hi"})

Contracts:

* ``publish(topic, data)`` returns the publication's offset once the broker took it;
  **0 on a topic whose history policy keeps nothing** (no position: at-most-once).
  Raises ValueError (`InvalidTopic`, `BadRequest`: the operations layer's checks, as
  on a node) for an invalid topic or data that is not JSON-serializable,
  `BrokerUnavailable` when the broker could not take it (never a silent drop).
* History policies come from `Settings` (``PUBSOCKET_HISTORY_*``, default
  `Settings.from_env()`), plus `history` rules like ``pubsub(history=...)``'s: pass the
  same ones the server's routes use, or the two disagree on what a topic keeps.
* ``memory://`` is refused (`ConfigError`): another process cannot reach it.
* `AsyncPublisher` runs on the caller's event loop with the node's `RedisBroker` (two
  connections: the publish pipeline, and the link whose health says Redis is there).
  `Publisher` needs no loop: it sends the same command (`redis.scripts.publish_command`)
  with redis-py's sync client from the calling thread (`brokers.redis.sync`), one
  pooled connection per concurrent thread, new ones in a forked child. Both connect on
  first use and let go at `close` / `aclose` (or the end of a ``with`` block).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .brokers import Broker, HistoryPolicy, Publication, broker_from_url
from .config import Settings
from .errors import BrokerUnavailable, ConfigError
from .hub import operations
from .hub.policy import HistoryRules

if TYPE_CHECKING:
    from .brokers.redis.sync import RedisSyncPublisher


def _no_delivery(topic: str, pub: Publication) -> None:
    """A publisher subscribes to nothing, so nothing is ever delivered to it."""


class AsyncPublisher:
    """Publishes to the broker of `broker_url` (default: `settings.broker`) from asyncio.

    Connects on first use (or ``async with``). `settings` defaults to
    `Settings.from_env()`; `history` maps topic patterns to policies (None: no history)
    ahead of the settings' rules, like ``pubsub(history=...)``.
    """

    def __init__(self, broker_url: str | None = None, *, settings: Settings | None = None,
                 history: Mapping[str, HistoryPolicy | None] | None = None) -> None:
        self.settings, self.url, self.rules = _configure(broker_url, settings, history)
        self._broker: Broker | None = None
        self._starting: asyncio.Task[Broker] | None = None
        self._closed = False

    async def publish(self, topic: str, data: Any, *,
                      idempotency_key: str | None = None) -> int:
        """Publish `data` (JSON-serializable) to `topic` on every node; the offset (0
        without history). See the module contract for errors."""
        payload = encode(topic, data)
        return (await self.publish_payload(topic, payload,
                                           idempotency_key=idempotency_key)).offset

    async def publish_payload(self, topic: str, payload: bytes, *,
                              idempotency_key: str | None = None) -> Publication:
        """Publish already JSON-encoded `payload` (the caller validated `topic`)."""
        broker = self._broker or await self._start()
        result = self.submit(broker, topic, payload, idempotency_key)
        return result if isinstance(result, Publication) else await result

    def submit(self, broker: Broker, topic: str, payload: bytes, idempotency_key: str | None
               ) -> Publication | Awaitable[Publication]:
        """Hand the publish to `broker` without awaiting it (the hub's fast path):
        the publication, or what to await for it (already queued in call order)."""
        policy = self.rules.policy(topic)
        result = broker.publish_nowait(topic, payload, policy, idempotency_key=idempotency_key)
        if result is None:
            return broker.publish(topic, payload, policy, idempotency_key=idempotency_key)
        return result

    async def _start(self) -> Broker:
        if self._closed:
            raise BrokerUnavailable("publisher closed")
        if self._starting is None:  # concurrent first publishes share one start
            self._starting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._starting)
        except BaseException:
            if self._starting.done():
                self._starting = None  # a failed start is tried again next time
            raise

    async def _connect(self) -> Broker:
        broker = broker_from_url(self.url, meta_ttl=self.settings.history_meta_ttl,
                                 topic_max_bytes=self.settings.history_topic_max_bytes,
                                 idempotency_ttl=self.settings.idempotency_ttl)
        await broker.start(_no_delivery)  # returns after the first connection attempt
        self._broker = broker
        return broker

    async def aclose(self) -> None:
        """Release the connections. Idempotent; publishing afterwards raises."""
        self._closed = True
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.close()

    async def __aenter__(self) -> AsyncPublisher:
        await self._start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class Publisher:
    """`AsyncPublisher` for synchronous code: no event loop, no thread of its own.

    ``publish`` sends the node's own publish command (`redis.scripts.publish_command`,
    through `RedisSyncPublisher`) on a connection of the calling thread and waits for
    the answer (at most `timeout` seconds, then `BrokerUnavailable`). Thread-safe and
    fork-safe: each thread publishes on a connection of its own; a forked child opens
    new ones. Same arguments as `AsyncPublisher`.
    """

    def __init__(self, broker_url: str | None = None, *, settings: Settings | None = None,
                 history: Mapping[str, HistoryPolicy | None] | None = None,
                 timeout: float = 10.0) -> None:
        self.settings, self.url, self.rules = _configure(broker_url, settings, history)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sender: RedisSyncPublisher | None = None
        self._closed = False

    def publish(self, topic: str, data: Any, *, idempotency_key: str | None = None) -> int:
        """Publish `data` to `topic` on every node; the offset (0 without history)."""
        payload = encode(topic, data)
        sender = self._sender or self._open()
        pub = sender.publish(topic, payload, self.rules.policy(topic),
                             idempotency_key=idempotency_key)
        return pub.offset

    def _open(self) -> RedisSyncPublisher:
        with self._lock:
            if self._closed:
                raise BrokerUnavailable("publisher closed")
            if self._sender is None:
                from .brokers.redis.sync import RedisSyncPublisher  # imports redis

                self._sender = RedisSyncPublisher(
                    self.url, meta_ttl=self.settings.history_meta_ttl,
                    idempotency_ttl=self.settings.idempotency_ttl, timeout=self.timeout,
                    topic_max_bytes=self.settings.history_topic_max_bytes)
            return self._sender

    def close(self) -> None:
        """Close the connections. Idempotent; publishing afterwards raises."""
        with self._lock:
            self._closed = True
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _configure(broker_url: str | None, settings: Settings | None,
               history: Mapping[str, HistoryPolicy | None] | None
               ) -> tuple[Settings, str, HistoryRules]:
    """(settings, broker URL, history rules) of a publisher; `ConfigError` for a broker
    another process cannot reach."""
    settings = settings if settings is not None else Settings.from_env()
    url = broker_url if broker_url is not None else settings.broker
    scheme = url.partition("://")[0]
    if scheme == "memory":
        raise ConfigError("a Publisher needs a shared broker (redis://...): memory:// "
                          "lives inside one server process and cannot be reached")
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"a Publisher needs a redis:// broker URL, not {scheme!r}")
    rules = HistoryRules.from_settings(settings)
    if history:
        rules.prepend(history)
    return settings, url, rules


def encode(topic: str, data: Any) -> bytes:
    """`data` as JSON for `topic`, by the checks every front door makes
    (`hub.operations`): `InvalidTopic` / `BadRequest`, both ValueErrors, for an invalid
    topic or data."""
    operations.check_topic(topic)
    return operations.encode(data)


__all__ = ["AsyncPublisher", "Publisher"]
