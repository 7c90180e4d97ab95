"""Brokers behind one narrow interface, chosen by URL (`memory://`, `redis://...`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Broker, DeliverFn
from .memory import MemoryBroker


def broker_from_url(url: str) -> Broker:
    """The broker for `url`. The Redis client is imported only for ``redis://`` URLs."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisBroker
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("redis:// brokers need `pip install pubsocket[redis]`") from exc
        broker: Broker = RedisBroker(url)
        return broker
    raise ConfigError(f"PUBSOCKET_BROKER: unknown scheme {scheme!r} (use memory:// or redis://)")


__all__ = ["Broker", "DeliverFn", "MemoryBroker", "broker_from_url"]
