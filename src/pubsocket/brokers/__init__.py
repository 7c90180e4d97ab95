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
from .memory import MemoryBroker


def broker_from_url(
    url: str, *, meta_ttl: float | None = None, max_bytes: int | None = None,
    idempotency_ttl: float | None = None,
) -> Broker:
    """The broker for `url`. The Redis client is imported only for ``redis://`` URLs.

    `meta_ttl` (seconds a topic's position outlives its last publish or history read)
    goes to either broker, `max_bytes` (the node-wide history cap) to the memory broker;
    `idempotency_ttl` (seconds a publish's idempotency key is remembered) to either;
    None keeps the defaults (one day; 64 MiB; 300 s).
    """
    scheme = urlsplit(url).scheme
    ttl = 86400.0 if meta_ttl is None else meta_ttl
    once = IDEMPOTENCY_TTL if idempotency_ttl is None else idempotency_ttl
    if scheme == "memory":
        if max_bytes is None:
            return MemoryBroker(meta_ttl=ttl, idempotency_ttl=once)
        return MemoryBroker(meta_ttl=ttl, max_bytes=max_bytes, idempotency_ttl=once)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisBroker
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("redis:// brokers need `pip install pubsocket[redis]`") from exc
        broker: Broker = RedisBroker(url, meta_ttl=ttl, idempotency_ttl=once)
        return broker
    raise ConfigError(f"PUBSOCKET_BROKER: unknown scheme {scheme!r} (use memory:// or redis://)")


__all__ = ["NO_HISTORY", "Broker", "DeliverFn", "HistoryPage", "HistoryPolicy", "MemoryBroker",
           "Position", "Publication", "Publisher", "broker_from_url"]
