"""Brokers behind one narrow interface, chosen by URL (`memory://`, `redis://...`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import (
    IDEMPOTENCY_TTL,
    NO_HISTORY,
    Broker,
    DeliverFn,
    HistoryPage,
    HistoryPolicy,
    Position,
    Publication,
    Publisher,
)
from .memory import MAX_BYTES, TOPIC_MAX_BYTES, MemoryBroker


def broker_from_url(
    url: str, *, meta_ttl: float | None = None, max_bytes: int | None = None,
    topic_max_bytes: int | None = None, idempotency_ttl: float | None = None,
) -> Broker:
    """The broker for `url`. The Redis client is imported only for ``redis://`` URLs.

    `meta_ttl` (seconds a topic's position outlives its last publish or history read)
    and `topic_max_bytes` (one topic's history) go to either broker, `max_bytes` (the
    node-wide cap) to the memory broker, `idempotency_ttl` (seconds a publish's
    idempotency key is remembered) to either; None keeps the defaults (one day; 4 MiB;
    64 MiB; 300 s).
    """
    scheme = urlsplit(url).scheme
    ttl = 86400.0 if meta_ttl is None else meta_ttl
    topic_cap = TOPIC_MAX_BYTES if topic_max_bytes is None else topic_max_bytes
    once = IDEMPOTENCY_TTL if idempotency_ttl is None else idempotency_ttl
    if scheme == "memory":
        return MemoryBroker(meta_ttl=ttl, topic_max_bytes=topic_cap,
                            max_bytes=MAX_BYTES if max_bytes is None else max_bytes,
                            idempotency_ttl=once)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisBroker
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("redis:// brokers need `pip install pubsocket[redis]`") from exc
        broker: Broker = RedisBroker(url, meta_ttl=ttl, topic_max_bytes=topic_cap,
                                     idempotency_ttl=once)
        return broker
    raise ConfigError(f"PUBSOCKET_BROKER: unknown scheme {scheme!r} (use memory:// or redis://)")


__all__ = ["NO_HISTORY", "Broker", "DeliverFn", "HistoryPage", "HistoryPolicy", "MemoryBroker",
           "Position", "Publication", "Publisher", "broker_from_url"]
