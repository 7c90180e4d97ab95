"""Pipelined publishes: one dedicated connection, written in batches, answered in order.

`PublishPipeline.submit` queues a command and returns its future at once. A writer task
sends everything queued meanwhile (every call of one loop tick, and whatever arrived
while the previous write was in progress) as one pipelined write, and a reader task
reads the replies in order as they come, resolving each command's own future. Redis
runs one connection's commands in order, so per-caller order is the call order, and
the whole batch reaches the subscribers in one socket write, which lets the server's
Flusher coalesce a batch into one write per WebSocket.

Contracts:

* Every future completes: with the publication (`submit`) or PUBLISH's count of
  receivers (`submit_counted`), with `BrokerError` when Redis refused
  that command (the others are unaffected), or with `BrokerUnavailable` when the link
  broke, the connection could not be opened, or no reply came within `timeout`. A
  command in flight when the link broke may still have run; it is reported as
  unavailable all the same, never as a success and never silently dropped.
* Bounded: at most `max_inflight` commands are sent and unanswered; beyond that they
  wait in the queue, and beyond `max_queued` queued commands `submit` fails fast with
  `BrokerUnavailable` ("publish queue full") instead of growing without bound.
* The publish script is loaded (SCRIPT LOAD) on every new connection before any
  EVALSHA, so a restarted Redis never answers NOSCRIPT. If it still does (SCRIPT FLUSH),
  the script is loaded again and the command retried once; only in that case can a
  retried command land after a later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from ...errors import BrokerError, BrokerUnavailable
from ..base import Publication, Publisher
from .scripts import publication_from_reply

log = logging.getLogger("pubsocket.broker")

Command = tuple[str | bytes | int, ...]

_hiredis_pack: Callable[[Command], bytes] | None
try:  # hiredis packs a command in C; redis-py's asyncio connection packs it in Python
    from hiredis import pack_command as _hiredis_pack  # type: ignore[assignment]
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    _hiredis_pack = None


class _Item:
    """One queued command and where its answer goes."""

    __slots__ = ("args", "future", "payload", "pub", "publisher", "retried", "t0")
    # A class attribute, not a slot: ordinary items pay nothing to carry it, and it is
    # read only for an item without a known publication (see `_resolve`).
    counted = False  # True: the future gets the integer reply itself (`_Counted`)

    def __init__(
        self,
        args: Command,
        future: asyncio.Future[Any],  # of a Publication (of an int for `_Counted`)
        pub: Publication | None,
        payload: bytes,
        t0: float,
        publisher: Publisher | None = None,
    ) -> None:
        self.args = args
        self.future = future
        self.pub = pub  # known in advance (plain PUBLISH), else built from the reply
        self.payload = payload
        self.publisher = publisher
        self.t0 = t0
        self.retried = False


class _Counted(_Item):
    """A PUBLISH whose future gets Redis's reply: how many clients received it."""

    __slots__ = ()
    counted = True


class PublishPipeline:
    """Ordered, pipelined publish commands on one connection of their own.

    `connect` returns a new, connected connection (RESP2, bytes replies).
    Counters: `errors` (futures failed), `last_latency` (seconds from submit to reply).
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[AbstractConnection]],
        script: bytes,
        *,
        timeout: float,
        max_inflight: int = 1024,
        max_queued: int = 65536,
    ) -> None:
        self._connect = connect
        self._script = script
        self._timeout = timeout
        self._max_inflight = max_inflight
        self._max_queued = max_queued
        self._pending: deque[_Item] = deque()  # accepted, not sent yet
        self._inflight: deque[_Item] = deque()  # sent, waiting for their reply, in order
        self._retry: deque[_Item] = deque()  # answered NOSCRIPT: resent first, in order
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._reload = False
        self._closing: set[asyncio.Task[None]] = set()
        self.errors = 0
        self.last_latency = 0.0

    def submit(
        self,
        args: Command,
        pub: Publication | None,
        payload: bytes,
        publisher: Publisher | None = None,
    ) -> asyncio.Future[Publication]:
        """Queue `args`; the future gets `pub`, or the script reply's publication (of
        `payload` by `publisher`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Publication] = loop.create_future()
        if len(self._pending) >= self._max_queued:
            self.errors += 1
            future.set_exception(BrokerUnavailable("publish queue full"))
            return future
        self._pending.append(_Item(args, future, pub, payload, loop.time(), publisher))
        if self._writer is None:
            self._writer = loop.create_task(self._write_forever(), name="pubsocket-redis-pub")
        self._wake.set()
        return future

    def submit_counted(self, args: Command) -> asyncio.Future[int]:
        """Queue `args` (a PUBLISH) like `submit`, in the same order; the future gets
        Redis's integer reply (PUBLISH: the number of clients that received it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if len(self._pending) >= self._max_queued:
            self.errors += 1
            future.set_exception(BrokerUnavailable("publish queue full"))
            return future
        self._pending.append(_Counted(args, future, None, b"", loop.time()))
        if self._writer is None:
            self._writer = loop.create_task(self._write_forever(), name="pubsocket-redis-pub")
        self._wake.set()
        return future

    async def close(self) -> None:
        """Fail what is queued, stop both tasks, close the connection. Idempotent."""
        self._break(BrokerUnavailable("broker closed"), self._conn)
        self._fail(self._pending, BrokerUnavailable("broker closed"))
        for task in (self._writer, self._reader):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1.0)
        self._writer = self._reader = None
        if self._closing:
            await asyncio.wait(self._closing, timeout=1.0)

    # -- writing --------------------------------------------------------------------
    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            conn: AbstractConnection | None = None
            try:
                while (self._pending or self._retry) and len(self._inflight) < self._max_inflight:
                    conn = self._conn or await self._open()
                    await self._send_batch(conn)
            except (RedisError, OSError) as exc:  # TimeoutError is an OSError
                self._break(exc, conn)
                self._fail(self._pending, BrokerUnavailable("broker publish failed"))
            except Exception as exc:  # a bug: fail loudly, keep the writer alive
                log.exception("broker publish writer failed")
                self._break(exc, conn)
                self._fail(self._pending, BrokerUnavailable("broker publish failed"))

    async def _open(self) -> AbstractConnection:
        async with asyncio.timeout(self._timeout):
            conn = await self._connect()
            try:
                await conn.send_command("SCRIPT", "LOAD", self._script, check_health=False)
                await conn.read_response(timeout=math.inf)
            except BaseException:
                with contextlib.suppress(RedisError, OSError):
                    await conn.disconnect(nowait=True)
                raise
        self._conn, self._reload = conn, False
        self._reader = asyncio.get_running_loop().create_task(
            self._read_forever(conn), name="pubsocket-redis-pub-reader"
        )
        return conn

    async def _send_batch(self, conn: AbstractConnection) -> None:
        # send_packed_command would reconnect a dropped connection silently; then the
        # replies would reach no reader. Checked without an await before the write.
        if conn is not self._conn or not conn.is_connected:
            raise RedisConnectionError("publish connection lost")
        pending, inflight = self._pending, self._inflight
        if self._retry:
            pending.extendleft(reversed(self._retry))
            self._retry.clear()
        room = self._max_inflight - len(inflight)
        batch = [pending.popleft() for _ in range(min(room, len(pending)))]
        commands: list[Command] = [item.args for item in batch]
        loop = asyncio.get_running_loop()
        if self._reload:  # NOSCRIPT was seen: load again ahead of the retried commands
            self._reload = False
            commands.insert(0, ("SCRIPT", "LOAD", self._script))
            batch.insert(0, _Item((), loop.create_future(), None, b"", loop.time()))
        if _hiredis_pack is not None:
            packed = [_hiredis_pack(command) for command in commands]
        else:  # pragma: no cover
            packed = conn.pack_commands(commands)
        inflight.extend(batch)  # before the write: replies may come before it returns
        if self._timer is None:
            self._arm_timer()
        await conn.send_packed_command(packed, check_health=False)

    # -- reading --------------------------------------------------------------------
    async def _read_forever(self, conn: AbstractConnection) -> None:
        """Read every reply, also while idle, so a closed link is noticed at once."""
        inflight = self._inflight
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    reply: Any = await conn.read_response(
                        timeout=math.inf, disconnect_on_error=False
                    )
                except ResponseError as exc:  # this command's own error reply
                    reply = exc
                if not inflight:
                    raise RedisConnectionError("a reply nobody waits for: out of step")
                item = inflight.popleft()
                self._resolve(item, reply)
                self.last_latency = loop.time() - item.t0
                if (self._pending or self._retry) and len(inflight) < self._max_inflight:
                    self._wake.set()
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            self._break(exc, conn)
        except Exception as exc:  # a bug in here: fail everything in flight, loudly
            log.exception("broker publish reader failed")
            self._break(exc, conn)

    def _resolve(self, item: _Item, reply: Any) -> None:
        future = item.future
        if not item.args:  # the SCRIPT LOAD put ahead of retried commands
            future.cancel()
            return
        if isinstance(reply, NoScriptError) and item.args and not item.retried:
            item.retried = True
            self._reload = True
            self._retry.append(item)
            return
        if future.done():  # the caller gave up (cancelled): nothing to tell
            return
        if isinstance(reply, ResponseError):
            self.errors += 1
            future.set_exception(BrokerError(f"broker rejected the publish: {reply}"))
            return
        pub = item.pub  # known for a plain PUBLISH: its reply (a count) is not needed
        if pub is None:
            if item.counted:
                if isinstance(reply, int):
                    future.set_result(reply)
                    return
                self.errors += 1
                future.set_exception(BrokerError(f"unexpected publish reply: {reply!r}"))
                return
            try:
                pub = publication_from_reply(reply, item.payload, item.publisher)
            except (ValueError, TypeError, AttributeError) as exc:
                self.errors += 1
                future.set_exception(BrokerError(f"unexpected publish reply: {exc}"))
                return
        future.set_result(pub)

    # -- failure --------------------------------------------------------------------
    def _arm_timer(self) -> None:
        if self._inflight:
            when = self._inflight[0].t0 + self._timeout
            self._timer = asyncio.get_running_loop().call_at(when, self._check_timeout)
        else:
            self._timer = None

    def _check_timeout(self) -> None:
        """No reply for `timeout` to the oldest command: treat the link as broken."""
        self._timer = None
        if self._inflight and asyncio.get_running_loop().time() - self._inflight[0].t0 >= (
            self._timeout
        ):
            self._break(TimeoutError("no reply from Redis to a publish"), self._conn)
            self._fail(self._pending, BrokerUnavailable("broker publish timed out"))
        else:
            self._arm_timer()

    def _break(self, exc: BaseException, conn: AbstractConnection | None) -> None:
        """Drop `conn` (if still current) and fail every command in flight on it."""
        if conn is None or conn is not self._conn:
            return
        self._conn = None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.get_running_loop().create_task(_quietly_disconnect(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        if not isinstance(exc, BrokerUnavailable):
            log.warning("broker publish connection lost (%s)", exc)
        self._fail(self._inflight, BrokerUnavailable("broker publish failed"))
        self._fail(self._retry, BrokerUnavailable("broker publish failed"))

    def _fail(self, items: deque[_Item], error: BrokerUnavailable) -> None:
        while items:
            item = items.popleft()
            if item.future.done():
                continue
            if not item.args:  # the SCRIPT LOAD placeholder: nobody awaits it
                item.future.cancel()
                continue
            self.errors += 1
            item.future.set_exception(error)


async def _quietly_disconnect(conn: AbstractConnection) -> None:
    with contextlib.suppress(RedisError, OSError):
        await conn.disconnect(nowait=True)
