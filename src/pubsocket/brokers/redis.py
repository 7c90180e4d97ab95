"""The Redis broker: scripted publishes on a pipeline, SUBSCRIBE on one dedicated connection.

URL: ``redis://[user:pass@]host:port/db?prefix=app:`` (also ``rediss://`` and ``unix://``).
A topic travels on the channel ``prefix + topic`` (default prefix ``pubsocket:``), so
several apps can share one Redis; every other query option goes to redis-py unchanged.
Keys, scripts and the message framing are described in `redis_scripts`; the publish
pipeline's ordering, bounds and failure reporting in `redis_pipeline`.

Contracts, beyond `Broker`:

* The node SUBSCRIBEs only to topics it has local subscribers for: no pattern, no firehose.
* `subscribe`/`unsubscribe` reach Redis in call order, and `subscribe` returns only once
  Redis confirmed the channel, so a message published after it returns is delivered.
  `unsubscribe` stops delivery at once, dropping messages of the topic still in flight.
* A publish with history is one atomic script (epoch, HINCRBY offset, XADD, the byte
  cap's trim, PEXPIREs, PUBLISH of the framed message), so every node gets offsets from
  the same counter and every node's publishes count towards one topic's byte cap.
  A publish with an idempotency key passes it as a third key of the same script (or,
  without history, a small EVAL), which checks it first (see `redis_scripts`).
  `publish_nowait` always returns a future already queued in call order on the
  pipeline; `publish` awaits it. Messages read from one socket read are delivered in
  one go, without yielding to the loop in between. `history` runs on a connection of
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
import math
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BrokerError, BrokerUnavailable, ConfigError
from .base import (
    IDEMPOTENCY_TTL,
    Broker,
    DeliverFn,
    HistoryPage,
    HistoryPolicy,
    Publication,
    Publisher,
    ResyncFn,
)
from .memory import TOPIC_MAX_BYTES
from .redis_options import DEFAULT_PREFIX, BackoffPolicy, backoff, split_prefix
from .redis_pipeline import PublishPipeline
from .redis_scripts import (
    HISTORY_LUA,
    PUBLISH_LUA,
    REMOVE_HISTORY_LUA,
    candidate_epoch,
    history_from_reply,
    milliseconds,
    parse_message,
    publish_command,
    topic_keys,
)

log = logging.getLogger("pubsocket.broker")

_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_RESUBSCRIBE_BATCH = 1000  # channels per SUBSCRIBE when re-subscribing after a reconnect
_Waiters = list["asyncio.Future[None]"]


class RedisBroker(Broker):
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
        self.prefix, self.redis_url = split_prefix(url)
        self._idempotency_ttl_ms = milliseconds(idempotency_ttl)
        self._prefix_len = len(self.prefix.encode())
        options: dict[str, Any] = {"socket_connect_timeout": 5.0}
        try:
            options.update(parse_url(self.redis_url))
            # redis-py bounds socket I/O with asyncio.wait_for, which on Python 3.11 can
            # swallow a cancellation (gh-86296), so close() could hang: we bound every
            # wait with asyncio.timeout ourselves and give redis-py no socket_timeout.
            self._timeout: float = options.pop("socket_timeout", None) or 5.0
            options["socket_timeout"] = None
            self._conn_class: type[AbstractConnection] = options.pop("connection_class", Connection)
            # RESP2 on our own connections: messages arrive as plain [kind, channel, data]
            # replies, script results as plain lists.
            self._sub_options = {**options, "protocol": 2, "decode_responses": False}
            self._conn_class(**self._sub_options)  # unknown options fail here, not in the reader
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid Redis broker URL: {exc}") from None
        # History reads go through a small pool; a blocking pool queues them while every
        # connection is busy (backpressure) instead of failing with "too many connections".
        pool = BlockingConnectionPool(
            connection_class=self._conn_class, max_connections=8, timeout=self._timeout, **options
        )
        self._redis = Redis(connection_pool=pool)
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
        self._acks: dict[bytes, deque[_Waiters]] = {}
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
        conn = self._conn_class(**self._sub_options)
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
            _resolve([f for entry in entries for f in entry], BrokerUnavailable("broker closed"))
        self._acks, self._wanted = {}, {}
        await self._pipeline.close()
        await self._redis.aclose(close_connection_pool=True)

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

    # -- the reader -----------------------------------------------------------------
    async def _run(self) -> None:
        """Connect, re-subscribe, read; on a link error or a bug, back off and start over."""
        delays: Iterator[float] | None = None
        lost_at: float | None = None  # monotonic start of the current outage
        connected_before = False
        try:
            while True:
                conn = self._conn_class(**self._sub_options)
                try:
                    async with asyncio.timeout(self._timeout):
                        await conn.connect_check_health()
                        await self._install(conn, resync=connected_before)
                    if lost_at is not None:
                        log.info("broker regained after %.1fs", time.monotonic() - lost_at)
                    self.reconnects += 1 if connected_before else 0
                    connected_before, lost_at, delays = True, None, None
                    self._first_attempt.set()
                    await self._read(conn)
                except (RedisError, OSError) as exc:
                    if lost_at is None:
                        lost_at = time.monotonic()
                        log.warning("broker lost (%s); reconnecting in the background", exc)
                except Exception:
                    # A bug, not an outage: say so loudly, then recover like from an outage
                    # (new connection, re-subscribe, resync) instead of dying half-alive.
                    self.reader_restarts += 1
                    lost_at = lost_at or time.monotonic()
                    log.exception("broker reader crashed; restarting it")
                finally:
                    self._conn = None
                    with contextlib.suppress(RedisError, OSError):
                        await conn.disconnect()
                self._first_attempt.set()
                delays = delays or self._backoff()
                await asyncio.sleep(next(delays))
        finally:
            self._first_attempt.set()  # never leave start() waiting

    async def _install(self, conn: AbstractConnection, resync: bool) -> None:
        """Make `conn` the subscriber: SUBSCRIBE every wanted topic, re-aim parked waiters.

        With `resync`, a PING follows the SUBSCRIBEs: Redis answers in order, so its PONG
        means every channel is confirmed, and the reader calls ``resync()`` then.
        """
        async with self._lock:
            parked = {ch: [f for e in entries for f in e] for ch, entries in self._acks.items()}
            channels = [self._channel(topic) for topic in self._wanted]
            # Exactly one entry per channel sent below, waiters or not, so that later
            # confirmations keep matching their own SUBSCRIBE.
            self._acks = {ch: deque([parked.pop(ch, [])]) for ch in channels}
            for waiters in parked.values():  # unsubscribed meanwhile: superseded, not failed
                _resolve(waiters, None)
            for i in range(0, len(channels), _RESUBSCRIBE_BATCH):
                await self._send(conn, "SUBSCRIBE", *channels[i : i + _RESUBSCRIBE_BATCH])
            self._resync_due = resync
            if resync:
                await self._send(conn, "PING")
            self._conn = conn

    async def _read(self, conn: AbstractConnection) -> None:
        """Dispatch replies until the link fails; PING when idle so a half-open link is
        noticed (no reply to a PING within another interval: the link is dead).

        Reads carry no timeout of their own (one timer per message measured a third of
        the reader's cost); a watchdog looks at the reply count once per interval.
        Replies already buffered are parsed without yielding to the loop, so every
        message of one socket read is delivered in the same loop tick.
        """
        reader = asyncio.create_task(self._read_replies(conn), name="pubsocket-redis-replies")
        watchdog = asyncio.create_task(self._watch(conn), name="pubsocket-redis-watchdog")
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when="FIRST_COMPLETED")
            for task in done:
                task.result()  # re-raise the link error (or the bug) that ended it
        finally:
            for task in (reader, watchdog):
                task.cancel()
            await asyncio.wait([reader, watchdog], timeout=1.0)

    async def _read_replies(self, conn: AbstractConnection) -> None:
        while True:
            reply = await conn.read_response(timeout=math.inf)
            self._replies += 1
            self._dispatch(reply)

    async def _watch(self, conn: AbstractConnection) -> None:
        seen, pinged = -1, False
        while True:
            await asyncio.sleep(self._ping_interval)
            if self._replies != seen:
                seen, pinged = self._replies, False
            elif pinged:
                raise RedisTimeoutError("no reply to PING on the subscriber connection")
            else:
                pinged = True
                await self._send(conn, "PING")

    def _dispatch(self, reply: Any) -> None:
        """Act on one reply of the subscriber connection (a bug here restarts the reader)."""
        if not isinstance(reply, list) or len(reply) < 3:
            # PING's [b"pong", b""]: the first one after a reconnect completes it.
            if self._resync_due:
                self._resync_due = False
                if self._resync is not None:
                    try:
                        self._resync()
                    except Exception:
                        log.exception("broker resync callback raised; the reader goes on")
            return
        kind, channel = reply[0], reply[1]
        topic = channel[self._prefix_len :].decode()
        # The `_wanted` check drops what was in flight when unsubscribe() returned.
        if kind == b"message" and self._deliver and topic in self._wanted:
            try:
                pub = parse_message(reply[2])
            except ValueError:  # not framed by a broker of this version
                log.warning("broker message without a position dropped (topic %r)", topic)
                return
            try:
                self._deliver(topic, pub)
            except Exception:
                log.exception("broker delivery raised; the reader goes on")
        elif kind == b"subscribe" and (entries := self._acks.get(channel)):
            _resolve(entries.popleft(), None)
            if not entries:
                del self._acks[channel]

    async def _send(self, conn: AbstractConnection, *args: str | bytes) -> None:
        # send_command would silently reconnect a dropped connection: a fresh socket with
        # no subscriptions, which the reader would then mistake for the subscribed one.
        if not conn.is_connected:
            raise RedisConnectionError("subscriber connection lost")
        async with asyncio.timeout(self._timeout):  # a timeout drops the connection
            await conn.send_command(*args, check_health=False)


def _resolve(waiters: _Waiters, error: BaseException | None) -> None:
    for waiter in (w for w in waiters if not w.done()):  # timed-out ones are cancelled
        waiter.set_result(None) if error is None else waiter.set_exception(error)


__all__ = ["DEFAULT_PREFIX", "BackoffPolicy", "RedisBroker", "backoff"]
