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
        self.subscribe_nowait(topic)

    async def unsubscribe(self, topic: str) -> None:
        self.unsubscribe_nowait(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        self.publish_nowait(topic, payload)

    def subscribe_nowait(self, topic: str) -> bool:
        self._topics.add(topic)
        return True

    def unsubscribe_nowait(self, topic: str) -> bool:
        self._topics.discard(topic)
        return True

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        deliver = self._deliver
        if deliver is not None and topic in self._topics:
            deliver(topic, payload)
        return True
