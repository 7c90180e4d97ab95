"""Brokers behind one narrow interface, chosen by URL (`memory://`, `redis://...`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import (
    NO_HISTORY,
    Broker,
    DeliverFn,
    HistoryPage,
    HistoryPolicy,
    Position,
    Publication,
)
from .memory import MemoryBroker


def broker_from_url(url: str, *, meta_ttl: float = 86_400.0,
                    max_bytes: int = 64 * 1024 * 1024) -> Broker:
    """The broker for `url`. The Redis client is imported only for ``redis://`` URLs.

    `meta_ttl`: how long a topic's position outlives its last publish; `max_bytes`: the
    memory broker's cap on kept history (Redis bounds it per topic instead)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBroker(meta_ttl=meta_ttl, max_bytes=max_bytes)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisBroker
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("redis:// brokers need `pip install pubsocket[redis]`") from exc
        broker: Broker = RedisBroker(url, meta_ttl=meta_ttl)
        return broker
    raise ConfigError(f"PUBSOCKET_BROKER: unknown scheme {scheme!r} (use memory:// or redis://)")


__all__ = ["NO_HISTORY", "Broker", "DeliverFn", "HistoryPage", "HistoryPolicy", "MemoryBroker",
           "Position", "Publication", "broker_from_url"]
