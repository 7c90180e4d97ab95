"""The Redis broker: scripted publishes on a pipeline, SUBSCRIBE on one dedicated connection.

URL: ``redis://[user:pass@]host:port/db?prefix=app:`` (also ``rediss://`` and ``unix://``).
A topic travels on the channel ``prefix + topic`` (default prefix ``pubsocket:``), so
several apps can share one Redis; every other query option goes to redis-py unchanged.
Keys, scripts and the message framing are described in `scripts`; the publish
pipeline's ordering, bounds and failure reporting in `pipeline`.

Contracts, beyond `Broker`:

* The node SUBSCRIBEs only to topics it has local subscribers for: no pattern, no firehose.
* `subscribe`/`unsubscribe` reach Redis in call order, and `subscribe` returns only once
  Redis confirmed the channel, so a message published after it returns is delivered.
  `unsubscribe` stops delivery at once, dropping messages of the topic still in flight.
* A publish with history is one atomic script (epoch, HINCRBY offset, XADD, the byte
  cap's trim, PEXPIREs, PUBLISH of the framed message), so every node gets offsets from
  the same counter and every node's publishes count towards one topic's byte cap.
  A publish with an idempotency key passes it as a third key of the same script (or,
  without history, a small EVAL), which checks it first (see `scripts`).
  `publish_nowait` always returns a future already queued in call order on the
  pipeline; `publish` awaits it. `publish_counted_nowait` queues a plain PUBLISH on
  the same pipeline (so in the same order) whose future gets PUBLISH's reply: the
  clients subscribed to the channel (or to a pattern matching it) when Redis ran it.
  Messages read from one socket read are delivered in one go, without yielding to the
  loop in between. `history` runs on a connection of
  its own: it sees every publish whose future completed, not those still queued.
* `start` never fails because Redis is down: the reader logs ``broker lost`` and keeps
  reconnecting in the background (a node may boot before its Redis does).
* While Redis is away (`healthy` is False), `publish` and `history` raise
  `BrokerUnavailable`; `subscribe` waits up to `confirm_timeout` for a reconnect, else
  raises `BrokerUnavailable` and forgets the topic (the hub drops a failed topic and never
  unsubscribes it); `unsubscribe` never raises.
* After a reconnect every wanted topic is subscribed again and, once Redis confirmed
  all of them, ``resync()`` is called (not after the first connect): what was published
  meanwhile is in the history, not in pub/sub.
* A bug in the reader (an unexpected exception) is logged with its traceback, counted in
  `reader_restarts`, and handled like a lost link: `healthy` is False, the reader starts
  over with backoff, re-subscribes and calls ``resync()``. The node is never half-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import BrokerError, BrokerUnavailable
from ..base import (
    IDEMPOTENCY_TTL,
    NO_HISTORY,
    Broker,
    DeliverFn,
    HistoryPage,
    HistoryPolicy,
    Publication,
    Publisher,
    ResyncFn,
)
from ..memory import TOPIC_MAX_BYTES
from .connections import RedisConnections
from .options import DEFAULT_PREFIX, BackoffPolicy, backoff
from .pipeline import PublishPipeline
from .reader import SubscriberLink, Waiters, resolve
from .scripts import (
    HISTORY_LUA,
    PUBLISH_LUA,
    REMOVE_HISTORY_LUA,
    candidate_epoch,
    history_from_reply,
    milliseconds,
    publish_command,
    topic_keys,
)

log = logging.getLogger("pubsocket.broker")

_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisBroker(SubscriberLink, Broker):
    """Redis pub/sub and history between nodes. Counters for /metrics: `reconnects`
    (connections re-established after the first), `reader_restarts` (reader bugs survived),
    `publish_errors`, `last_publish_latency` (seconds)."""

    def __init__(
        self,
        url: str,
        *,
        backoff_policy: BackoffPolicy = backoff,
        confirm_timeout: float = 5.0,
        ping_interval: float = 30.0,
        meta_ttl: float = 86400.0,
        topic_max_bytes: int = TOPIC_MAX_BYTES,
        max_inflight: int = 1024,
        max_queued: int = 65536,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
    ) -> None:
        """`topic_max_bytes`: what one topic's history keeps, in payload and publisher
        bytes (0: no cap; the newest publication is always kept)."""
        self.connections = RedisConnections(url)  # also lends presence its client
        self.prefix, self.redis_url = self.connections.prefix, self.connections.url
        self._idempotency_ttl_ms = milliseconds(idempotency_ttl)
        self._prefix_len = len(self.prefix.encode())
        self._timeout = self.connections.timeout
        # History reads (and script loads) go through a small blocking pool.
        self._redis = self.connections.client("history", 8)
        self._publish_script = self._redis.register_script(PUBLISH_LUA)
        self._history_script = self._redis.register_script(HISTORY_LUA)
        self._remove_script = self._redis.register_script(REMOVE_HISTORY_LUA)
        self._meta_ttl_ms = milliseconds(meta_ttl)
        self._topic_max_bytes = topic_max_bytes
        self._pipeline = PublishPipeline(
            self._connect,
            PUBLISH_LUA,
            timeout=self._timeout,
            max_inflight=max_inflight,
            max_queued=max_queued,
        )
        self._backoff = backoff_policy
        self._confirm_timeout = confirm_timeout
        self._ping_interval = ping_interval
        self._deliver: DeliverFn | None = None
        self._resync: ResyncFn | None = None
        self._resync_due = False  # set by a reconnect, done when its PING is answered
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._first_attempt = asyncio.Event()
        self._lock = asyncio.Lock()  # FIFO: subscriber-connection writes go out in call order
        self._conn: AbstractConnection | None = None  # the live subscriber connection
        self._wanted: dict[str, int] = {}  # topic -> token of the subscribe() that wants it
        self._tokens = itertools.count(1)
        # One entry per SUBSCRIBE sent on `_conn`, oldest first: Redis confirms each in
        # order, so the n-th confirmation of a channel answers its n-th SUBSCRIBE.
        self._acks: dict[bytes, deque[Waiters]] = {}
        self.reconnects, self.reader_restarts, self._refused = 0, 0, 0
        self._replies = 0  # replies read on the subscriber connection (for the watchdog)

    @property
    def shared(self) -> bool:
        return True

    @property
    def healthy(self) -> bool:
        """True while the subscriber link is up (and the broker running)."""
        return self._conn is not None and not self._closed

    @property
    def publish_errors(self) -> int:
        return self._refused + self._pipeline.errors

    @property
    def last_publish_latency(self) -> float:
        return self._pipeline.last_latency

    def _channel(self, topic: str) -> bytes:
        return (self.prefix + topic).encode()

    async def _connect(self) -> AbstractConnection:
        conn = self.connections.connection()
        await conn.connect_check_health()
        return conn

    async def start(self, deliver: DeliverFn, resync: ResyncFn | None = None) -> None:
        """Start the reader. Returns after the first connection attempt, whatever it gave."""
        if self._task is not None or self._closed:
            raise RuntimeError("RedisBroker.start() called twice or after close()")
        self._deliver, self._resync = deliver, resync
        self._task = asyncio.create_task(self._run(), name="pubsocket-redis-reader")
        await self._first_attempt.wait()

    async def close(self) -> None:
        """Stop the reader, fail pending subscribes and publishes, close every connection.
        Idempotent."""
        if self._closed:
            return
        self._closed, self._deliver, self._resync = True, None, None
        task, self._task = self._task, None
        while task is not None and not task.done():  # again if a cancel got swallowed
            task.cancel()
            await asyncio.wait([task], timeout=1.0)  # unlike `await task`: no re-raise
        for entries in self._acks.values():
            resolve([f for entry in entries for f in entry], BrokerUnavailable("broker closed"))
        self._acks, self._wanted = {}, {}
        await self._pipeline.close()
        await self.connections.close()

    async def subscribe(self, topic: str) -> None:
        """Subscribe and wait for Redis's confirmation (a reconnect's counts too)."""
        if self._closed or self._task is None:
            raise BrokerUnavailable("broker is not running")
        token = next(self._tokens)
        self._wanted[topic] = token
        channel = self._channel(topic)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._confirm_timeout):
                async with self._lock:
                    # Without a connection the waiter is parked; the reconnect's
                    # re-subscription of every wanted topic will confirm it.
                    self._acks.setdefault(channel, deque()).append([waiter])
                    if self._conn is not None:
                        with contextlib.suppress(*_LINK_ERRORS):  # the reader sees the loss
                            await self._send(self._conn, "SUBSCRIBE", channel)
                await waiter
        except BaseException as exc:
            # Failed or cancelled: the hub drops the topic without unsubscribing it, so
            # forget it here (unless a later subscribe() owns it now).
            if self._wanted.get(topic) == token:
                await self.unsubscribe(topic)  # forgets before its first await
            if isinstance(exc, TimeoutError):
                raise BrokerUnavailable("broker did not confirm the subscription") from None
            raise

    async def unsubscribe(self, topic: str) -> None:
        """Forget `topic` now (no delivery after this returns); UNSUBSCRIBE is best effort."""
        if self._wanted.pop(topic, None) is None:
            return
        async with self._lock:
            if self._conn is not None:  # if lost, the reconnect just won't re-subscribe it
                with contextlib.suppress(RedisError, OSError):
                    await self._send(self._conn, "UNSUBSCRIBE", self._channel(topic))

    def publish_nowait(
        self, topic: str, payload: bytes, policy: HistoryPolicy, publisher: Publisher | None = None,
        *, idempotency_key: str | None = None,
    ) -> asyncio.Future[Publication]:
        """Queue the publish on the pipeline; the future is already in call order."""
        if not self.healthy or self._task is None:
            self._refused += 1
            future: asyncio.Future[Publication] = asyncio.get_running_loop().create_future()
            future.set_exception(BrokerUnavailable("broker is not connected"))
            return future
        command, pub = publish_command(
            self.prefix, self._publish_script.sha, topic, payload, policy, publisher,
            self._meta_ttl_ms, self._idempotency_ttl_ms, idempotency_key,
            self._topic_max_bytes)
        return self._pipeline.submit(command, pub, payload, publisher)

    def publish_counted_nowait(self, topic: str, payload: bytes) -> asyncio.Future[int]:
        """Queue a PUBLISH without history on the pipeline; the future gets how many
        subscribers Redis handed it to."""
        if not self.healthy or self._task is None:
            self._refused += 1
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            future.set_exception(BrokerUnavailable("broker is not connected"))
            return future
        command, _ = publish_command(
            self.prefix, self._publish_script.sha, topic, payload, NO_HISTORY, None,
            self._meta_ttl_ms, self._idempotency_ttl_ms, None, self._topic_max_bytes)
        return self._pipeline.submit_counted(command)

    async def publish(
        self, topic: str, payload: bytes, policy: HistoryPolicy, publisher: Publisher | None = None,
        *, idempotency_key: str | None = None,
    ) -> Publication:
        """`publish_nowait`, awaited: `BrokerUnavailable` / `BrokerError` on failure."""
        return await self.publish_nowait(topic, payload, policy, publisher,
                                         idempotency_key=idempotency_key)

    async def history(self, topic: str, since: int | None, limit: int,
                      max_bytes: int = 0) -> HistoryPage:
        """One script: create the epoch if missing, read the position and the entries
        (stopping at `max_bytes` inside the script, see `HISTORY_LUA`)."""
        if not self.healthy or self._task is None:
            raise BrokerUnavailable("broker is not connected")
        meta, stream = topic_keys(self.prefix, topic)
        first = 1 if since is None else max(1, since + 1)
        args: list[int | str] = [first, max(0, limit), self._meta_ttl_ms, candidate_epoch(),
                                 max(0, max_bytes)]
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._history_script(keys=[meta, stream], args=args)
        except _LINK_ERRORS as exc:  # TimeoutError is an OSError
            raise BrokerUnavailable("broker history read failed") from exc
        except RedisError as exc:
            raise BrokerError("broker rejected the history read") from exc
        try:
            return history_from_reply(reply)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BrokerError("unexpected history reply") from exc

    async def remove_history(self, topic: str) -> None:
        """Delete the topic's stream; its meta hash (epoch, top offset) stays."""
        if not self.healthy or self._task is None:
            raise BrokerUnavailable("broker is not connected")
        meta, stream = topic_keys(self.prefix, topic)
        try:
            async with asyncio.timeout(self._timeout):
                await self._remove_script(keys=[meta, stream])
        except _LINK_ERRORS as exc:
            raise BrokerUnavailable("broker history removal failed") from exc
        except RedisError as exc:
            raise BrokerError("broker rejected the history removal") from exc


__all__ = ["DEFAULT_PREFIX", "BackoffPolicy", "RedisBroker", "backoff"]
