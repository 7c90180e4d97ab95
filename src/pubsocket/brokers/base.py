"""The broker interface: topic names and bytes, a lifecycle, one delivery stream.

A broker carries encoded payloads between hub nodes. The hub calls `subscribe` for a
topic when its first local subscriber arrives and `unsubscribe` when the last one leaves,
so a node only receives topics it has subscribers for. Every message published to a topic
the node is subscribed to reaches `deliver(topic, payload)` exactly once, in publish order
per publisher. `publish` raises `BrokerUnavailable` when the message could not be handed
to the engine: a publish is never dropped silently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

DeliverFn = Callable[[str, bytes], None]


class Broker(ABC):
    """Carries (topic, payload) pairs to every subscribed node, this one included."""

    @abstractmethod
    async def start(self, deliver: DeliverFn) -> None:
        """Connect and begin calling `deliver` for subscribed topics."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering and release connections. Idempotent."""

    @abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start receiving `topic`. Raises `BrokerUnavailable` if it cannot be confirmed."""

    @abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving `topic` (best effort while the engine is away)."""

    @abstractmethod
    async def publish(self, topic: str, payload: bytes) -> None:
        """Hand `payload` to every subscribed node. Raises `BrokerUnavailable` on failure."""

    # Optional inline fast paths. A broker that can do an operation without I/O does it
    # and returns True; the default (and any broker doing real I/O) returns False and the
    # hub awaits the coroutine instead. The memory broker is the one that can.
    def subscribe_nowait(self, topic: str) -> bool:
        """Subscribe without waiting, if this broker can; True when done."""
        return False

    def unsubscribe_nowait(self, topic: str) -> bool:
        """Unsubscribe without waiting, if this broker can; True when done."""
        return False

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """Publish without waiting, if this broker can; True when done."""
        return False

    @property
    def shared(self) -> bool:
        """True when other processes can reach this broker (required for --workers > 1)."""
        return False
