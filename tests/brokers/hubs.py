"""Hubs on one real Redis, for the tests of what crosses nodes (test_cluster_redis,
test_relay_redis): each hub has its own broker connections, as separate processes have.
The `redis_hubs` fixture (conftest.py) hands out a `RedisHubs` and closes its hubs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pubsocket import Hub, Settings
from pubsocket.brokers.redis import RedisBroker

MakeHub = Callable[..., Awaitable[Hub]]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once `condition()` holds; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


class RedisHubs:
    """Started hubs sharing one fresh prefix of the Redis at `redis_url`."""

    def __init__(self, redis_url: str) -> None:
        self.url = f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"
        self.hubs: list[Hub] = []

    async def start(self, settings: Settings, url: str | None = None, **broker: Any) -> Hub:
        """A started hub whose relay is subscribed (so it can be routed to at once).
        `url` replaces the shared prefix's (another server, or a proxy to it); `broker`
        goes to `RedisBroker`."""
        hub = Hub(settings, RedisBroker(url or self.url, **broker))
        self.hubs.append(hub)
        await hub.start()
        await until(lambda: hub.relay.ready)
        return hub

    async def close(self) -> None:
        """Close every hub started (closing one twice is harmless)."""
        for hub in self.hubs:
            await hub.close()
