"""`RedisConnections`: every connection one node opens to one Redis, made in one place.

The broker and presence used to parse the URL and build their pools each on their own;
now a node has one manager per Redis URL. It parses the URL once (``prefix`` aside,
`options.split_prefix`), checks its options before anything connects, and hands out:

* `connection()`: a dedicated RESP2 connection (the broker's subscriber link and its
  publish pipeline each hold one);
* `client(name, max_connections)`: a named client on a blocking pool of its own (history
  reads; presence), made once and shared by whoever asks for that name.

`close()` closes every client it made. This is the seam a Redis Cluster manager would
replace (slot-aware clients, a connection per shard): every key pubsocket writes already
carries its topic's hash tag (`scripts.topic_keys`).

Timeouts: redis-py bounds socket I/O with ``asyncio.wait_for``, which on Python 3.11 can
swallow a cancellation (gh-86296), so a close could hang; callers bound every wait with
``asyncio.timeout(manager.timeout)`` themselves and redis-py gets no ``socket_timeout``.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url

from ...errors import ConfigError
from .options import split_prefix


class RedisConnections:
    """Connections to the Redis of `url` (``redis://``, ``rediss://``, ``unix://``)."""

    def __init__(self, url: str) -> None:
        """Raises `ConfigError` when the URL or one of its options is not valid."""
        self.prefix, self.url = split_prefix(url)
        options: dict[str, Any] = {"socket_connect_timeout": 5.0}
        try:
            options.update(parse_url(self.url))
            self.timeout: float = options.pop("socket_timeout", None) or 5.0
            options["socket_timeout"] = None
            self._conn_class: type[AbstractConnection] = options.pop("connection_class",
                                                                     Connection)
            # RESP2 and bytes on our own connections: messages arrive as plain
            # [kind, channel, data] replies, script results as plain lists.
            self._dedicated = {**options, "protocol": 2, "decode_responses": False}
            self._conn_class(**self._dedicated)  # unknown options fail here, not later
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid Redis broker URL: {exc}") from None
        self._options = options
        self._clients: dict[str, Redis] = {}

    def connection(self) -> AbstractConnection:
        """A new dedicated connection, not yet connected (``connect_check_health()``)."""
        return self._conn_class(**self._dedicated)

    def client(self, name: str, max_connections: int) -> Redis:
        """The client called `name`, on a blocking pool of `max_connections` (a burst
        queues instead of failing with "too many connections"); made on first use."""
        found = self._clients.get(name)
        if found is None:
            pool = BlockingConnectionPool(connection_class=self._conn_class,
                                          max_connections=max_connections,
                                          timeout=self.timeout, **self._options)
            found = self._clients[name] = Redis(connection_pool=pool)
        return found

    async def close(self) -> None:
        """Close every client made here (dedicated connections are their holders')."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose(close_connection_pool=True)
