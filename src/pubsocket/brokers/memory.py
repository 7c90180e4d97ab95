"""The in-memory broker: one process, the same delivery path as the Redis broker."""

from __future__ import annotations

from .base import Broker, DeliverFn


class MemoryBroker(Broker):
    """Delivers each publish synchronously to this process's hub, for subscribed topics."""

    def __init__(self) -> None:
        self._deliver: DeliverFn | None = None
        self._topics: set[str] = set()

    async def start(self, deliver: DeliverFn) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None
        self._topics.clear()

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        deliver = self._deliver
        if deliver is not None and topic in self._topics:
            deliver(topic, payload)
