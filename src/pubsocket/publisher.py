"""Publish from anywhere: `AsyncPublisher` and the synchronous `Publisher`.

A Django view, a Celery task or a script publishes straight to the broker the nodes
share (``redis://...``), exactly as a node's ``hub.publish`` does: the same broker class
and publish script, so the publication gets the topic's next offset, is kept in history
by the topic's policy and reaches every node's subscribers (and their recovery)::

    from pubsocket import Publisher

    publisher = Publisher("redis://127.0.0.1:6379/0")   # or Publisher(): PUBSOCKET_BROKER
    offset = publisher.publish("chat:lobby", {"text": "hi"})

Contracts:

* ``publish(topic, data)`` returns the publication's offset once the broker took it;
  **0 on a topic whose history policy keeps nothing** (no position: at-most-once).
  Raises ValueError for an invalid topic or data that is not JSON-serializable,
  `BrokerUnavailable` when the broker could not take it (never a silent drop).
* History policies come from `Settings` (``PUBSOCKET_HISTORY_*``, default
  `Settings.from_env()`), plus `history` rules like ``pubsub(history=...)``'s: pass the
  same ones the server's routes use, or the two disagree on what a topic keeps.
* ``memory://`` is refused (`ConfigError`): another process cannot reach it.
* `AsyncPublisher` runs on the caller's event loop; `Publisher` runs one of its own
  in a daemon thread, started on first use and again in a forked child, so it works
  from threads without a loop (and is safe to share between threads). Both hold two
  Redis connections (publishes, and the link that tells them Redis is reachable) until
  `close` / `aclose` (or the end of a ``with`` / ``async with`` block).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any

import orjson

from .brokers import Broker, HistoryPolicy, Publication, broker_from_url
from .config import Settings
from .errors import BrokerUnavailable, ConfigError
from .hub.policy import HistoryRules
from .protocol import valid_topic
from .server.runner import new_event_loop

_CONNECT_TIMEOUT = 10.0  # seconds the sync Publisher waits for its loop thread to start


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
        self.settings = settings if settings is not None else Settings.from_env()
        self.url = broker_url if broker_url is not None else self.settings.broker
        if self.url.partition("://")[0] == "memory":
            raise ConfigError("a Publisher needs a shared broker (redis://...): memory:// "
                              "lives inside one server process and cannot be reached")
        self.rules = HistoryRules.from_settings(self.settings)
        if history:
            self.rules.prepend(history)
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
    """`AsyncPublisher` for synchronous code: a private event loop in a daemon thread.

    ``publish`` blocks until the broker took the message (at most `timeout` seconds,
    then `BrokerUnavailable`). Thread-safe: concurrent callers share one pipelined
    connection. Same arguments as `AsyncPublisher`.
    """

    def __init__(self, broker_url: str | None = None, *, settings: Settings | None = None,
                 history: Mapping[str, HistoryPolicy | None] | None = None,
                 timeout: float = 10.0) -> None:
        self._inner = AsyncPublisher(broker_url, settings=settings, history=history)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    @property
    def url(self) -> str:
        return self._inner.url

    def publish(self, topic: str, data: Any, *, idempotency_key: str | None = None) -> int:
        """Publish `data` to `topic` on every node; the offset (0 without history)."""
        payload = encode(topic, data)  # bad input fails here, in the caller's thread
        loop = self._ensure_loop()
        done: concurrent.futures.Future[Publication] = concurrent.futures.Future()
        # One callback on the loop, no Task per publish: it queues the publish on the
        # broker's pipeline, whose answer completes `done` (measured: a coroutine per
        # publish via run_coroutine_threadsafe cost a third of the rate).
        loop.call_soon_threadsafe(self._submit, topic, payload, idempotency_key, done)
        try:
            return done.result(self.timeout).offset
        except TimeoutError:
            done.cancel()
            raise BrokerUnavailable("publish timed out") from None

    def _submit(self, topic: str, payload: bytes, key: str | None,
                done: concurrent.futures.Future[Publication]) -> None:
        """On the loop thread: queue the publish, chain its outcome to `done`."""
        if not done.set_running_or_notify_cancel():
            return
        inner = self._inner
        try:
            result = (inner.submit(inner._broker, topic, payload, key) if inner._broker
                      else inner.publish_payload(topic, payload, idempotency_key=key))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
            done.set_exception(exc)
            return
        if isinstance(result, Publication):
            done.set_result(result)
            return
        future = asyncio.ensure_future(result)
        future.add_done_callback(lambda f: _chain(f, done))

    def close(self) -> None:
        """Close the connections and stop the thread. Idempotent."""
        with self._lock:
            self._closed = True
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None or os.getpid() != self._pid:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._inner.aclose(), loop).result(self.timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self.timeout)

    def __enter__(self) -> Publisher:
        self._ensure_loop()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise BrokerUnavailable("publisher closed")
            if os.getpid() != self._pid:
                # A forked child: the parent's thread and connections are not ours.
                self._pid, self._loop, self._thread = os.getpid(), None, None
                rules = self._inner.rules  # keep the rules given at construction
                self._inner = AsyncPublisher(self._inner.url, settings=self._inner.settings)
                self._inner.rules = rules
            if self._loop is None:
                loop = new_event_loop()  # uvloop where available, like a node's
                ready = threading.Event()
                thread = threading.Thread(target=_serve_loop, args=(loop, ready),
                                          name="pubsocket-publisher", daemon=True)
                thread.start()
                if not ready.wait(_CONNECT_TIMEOUT):
                    raise BrokerUnavailable("publisher thread did not start")
                self._loop, self._thread = loop, thread
            return self._loop


def encode(topic: str, data: Any) -> bytes:
    """`data` as JSON for `topic`; ValueError for an invalid topic or data."""
    if not valid_topic(topic):
        raise ValueError("invalid topic")
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise ValueError("data is not JSON-serializable") from exc


def _chain(source: asyncio.Future[Publication],
           done: concurrent.futures.Future[Publication]) -> None:
    if source.cancelled():
        done.cancel()
    elif (exc := source.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(source.result())


def _serve_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        loop.close()


__all__ = ["AsyncPublisher", "Publisher"]
