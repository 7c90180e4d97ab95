"""Publishing to the Redis broker from synchronous code, without an event loop.

`RedisSyncPublisher` sends the very command a node's `RedisBroker` pipelines
(`redis.scripts.publish_command`: the same script, keys, framing and idempotency key) on
a redis-py sync connection of the calling thread, and reads the reply there, so a publish
costs one round trip and no thread hand-off. It subscribes to nothing.

Contracts:

* Thread-safe: each thread publishes on a connection of its own (opened on its first
  publish, kept until `close`), so one thread's publishes reach Redis in call order.
* Fork-safe: a forked child opens new connections instead of sharing the parent's.
* Every publish returns the `Publication` or raises: `BrokerUnavailable` when Redis
  cannot be reached or did not answer within `timeout` (the command may still have
  run), `BrokerError` when Redis refused it. After SCRIPT FLUSH or a Redis restart the
  script is loaded again and the publish retried once (NOSCRIPT changes nothing).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

from redis.connection import Connection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import BrokerError, BrokerUnavailable, ConfigError
from ..base import IDEMPOTENCY_TTL, HistoryPolicy, Publication, Publisher
from ..memory import TOPIC_MAX_BYTES
from .options import split_prefix
from .scripts import PUBLISH_LUA, milliseconds, publication_from_reply, publish_command

_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisSyncPublisher:
    """Publishes like `RedisBroker.publish`, synchronously; same URL (``?prefix=``)."""

    def __init__(self, url: str, *, meta_ttl: float = 86400.0,
                 idempotency_ttl: float = IDEMPOTENCY_TTL, timeout: float = 5.0,
                 topic_max_bytes: int = TOPIC_MAX_BYTES) -> None:
        self.prefix, redis_url = split_prefix(url)
        try:
            options: dict[str, Any] = {"socket_connect_timeout": timeout,
                                       **parse_url(redis_url)}  # type: ignore[no-untyped-call]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid Redis broker URL: {exc}") from None
        options.setdefault("socket_timeout", timeout)
        # RESP2 and bytes: script replies arrive as the plain lists publication_from_reply reads.
        options.update(protocol=2, decode_responses=False)
        self._conn_class: Any = options.pop("connection_class", Connection)  # unix://, rediss://
        try:
            self._conn_class(**options)  # unknown options fail here; it connects on first use
        except TypeError as exc:
            raise ConfigError(f"invalid Redis broker URL: {exc}") from None
        self._options = options
        # One connection per thread, kept: a pool checkout costs a poll() syscall and
        # locks per publish (measured: a third of the rate). `_conns` lets close() reach
        # every thread's; a forked child (another pid) opens its own.
        self._local = threading.local()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._sha = hashlib.sha1(PUBLISH_LUA).hexdigest()  # what EVALSHA names it by
        self._meta_ttl_ms = milliseconds(meta_ttl)
        self._idempotency_ttl_ms = milliseconds(idempotency_ttl)
        self._topic_max_bytes = topic_max_bytes  # one topic's history cap, as a node's

    def publish(self, topic: str, payload: bytes, policy: HistoryPolicy,
                publisher: Publisher | None = None, *,
                idempotency_key: str | None = None) -> Publication:
        """Publish and wait for Redis's answer (see the module contract)."""
        command, known = publish_command(
            self.prefix, self._sha, topic, payload, policy, publisher, self._meta_ttl_ms,
            self._idempotency_ttl_ms, idempotency_key, self._topic_max_bytes)
        conn = self._connection()
        try:
            reply = self._run(conn, command)
        except _LINK_ERRORS as exc:
            conn.disconnect()  # the next publish of this thread connects again
            raise BrokerUnavailable("broker publish failed") from exc
        except ResponseError as exc:
            raise BrokerError(f"broker rejected the publish: {exc}") from exc
        except RedisError as exc:
            conn.disconnect()
            raise BrokerUnavailable("broker publish failed") from exc
        if known is not None:
            return known
        try:
            return publication_from_reply(reply, payload, publisher)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BrokerError(f"unexpected publish reply: {exc}") from exc

    def _run(self, conn: Any, command: tuple[Any, ...]) -> Any:  # redis-py's sync API is untyped
        try:
            conn.send_command(*command)
            return conn.read_response()
        except NoScriptError:  # a restarted or flushed Redis: load it, try once more
            conn.send_command("SCRIPT", "LOAD", PUBLISH_LUA)
            conn.read_response()
            conn.send_command(*command)
            return conn.read_response()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._pid == os.getpid() and not self._closed:
            return conn
        with self._lock:
            if self._closed:
                raise BrokerUnavailable("publisher closed")
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._conns = os.getpid(), []
                self._local = threading.local()
            conn = self._conn_class(**self._options)  # connects on first send
            self._local.conn = conn
            self._conns.append(conn)
            return conn

    def close(self) -> None:
        """Close every thread's connection. Idempotent; publishing afterwards raises."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        if self._pid == os.getpid():
            for conn in conns:
                conn.disconnect()


__all__ = ["RedisSyncPublisher"]
