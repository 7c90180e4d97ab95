"""The Redis broker's reader: one subscriber connection, kept alive and re-subscribed.

`SubscriberLink` is mixed into `RedisBroker`. It owns the connection that SUBSCRIBEs the
topics this node follows: connect, re-subscribe every wanted topic (confirmations
matched to their SUBSCRIBE in order), read and dispatch messages without yielding
between those of one socket read, PING when idle so a half-open link is noticed, and on
a link error or a bug back off and start over. After a reconnect the PONG that follows
the re-subscription triggers ``resync()`` (docs/design.md "Positions, recovery and
gaps"). No publish or history traffic goes through here (`pipeline`, the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..base import DeliverFn, ResyncFn
from .connections import RedisConnections
from .options import BackoffPolicy
from .scripts import parse_message

log = logging.getLogger("pubsocket.broker")

_RESUBSCRIBE_BATCH = 1000  # channels per SUBSCRIBE when re-subscribing after a reconnect
Waiters = list["asyncio.Future[None]"]


class SubscriberLink:
    """The reader half of `RedisBroker` (its state is set up by the broker)."""

    connections: RedisConnections
    _timeout: float
    _backoff: BackoffPolicy
    _ping_interval: float
    _deliver: DeliverFn | None
    _resync: ResyncFn | None
    _resync_due: bool
    _first_attempt: asyncio.Event
    _lock: asyncio.Lock
    _conn: AbstractConnection | None
    _wanted: dict[str, int]
    _acks: dict[bytes, deque[Waiters]]
    _prefix_len: int
    _replies: int
    reconnects: int
    reader_restarts: int

    def _channel(self, topic: str) -> bytes:
        raise NotImplementedError

    async def _run(self) -> None:
        """Connect, re-subscribe, read; on a link error or a bug, back off and start over."""
        delays: Iterator[float] | None = None
        lost_at: float | None = None  # monotonic start of the current outage
        connected_before = False
        try:
            while True:
                conn = self.connections.connection()
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
                resolve(waiters, None)
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
            resolve(entries.popleft(), None)
            if not entries:
                del self._acks[channel]

    async def _send(self, conn: AbstractConnection, *args: str | bytes) -> None:
        # send_command would silently reconnect a dropped connection: a fresh socket with
        # no subscriptions, which the reader would then mistake for the subscribed one.
        if not conn.is_connected:
            raise RedisConnectionError("subscriber connection lost")
        async with asyncio.timeout(self._timeout):  # a timeout drops the connection
            await conn.send_command(*args, check_health=False)


def resolve(waiters: Waiters, error: BaseException | None) -> None:
    for waiter in (w for w in waiters if not w.done()):  # timed-out ones are cancelled
        waiter.set_result(None) if error is None else waiter.set_exception(error)
