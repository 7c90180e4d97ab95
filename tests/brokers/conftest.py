"""Broker fixtures: every contract test runs against `memory` and a real Redis.

Each Redis test gets its own channel prefix, so tests never see each other's traffic.
The Redis is the session's own (`redis_url` in tests/conftest.py: a server started on a
free port, or ``PUBSOCKET_TEST_REDIS``); one that cannot start fails the redis tests
loudly instead of skipping them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from pubsocket.brokers import Broker, MemoryBroker
from pubsocket.brokers.redis import RedisBroker


@dataclass
class Node:
    """A started broker and what it delivered, in order."""

    broker: Broker
    received: list[tuple[str, bytes]] = field(default_factory=list)

    def deliver(self, topic: str, payload: bytes) -> None:
        self.received.append((topic, payload))

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """Wait until at least `count` messages arrived; return them all."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.002)
        return self.received

    async def settle(self, delay: float = 0.1) -> list[tuple[str, bytes]]:
        """Give stray deliveries time to show up (for asserting that none arrive)."""
        await asyncio.sleep(delay)
        return self.received


MakeNode = Callable[[], Awaitable[Node]]


@pytest.fixture(params=["memory", "redis"])
async def make_node(request: pytest.FixtureRequest) -> AsyncIterator[MakeNode]:
    """Start nodes of one broker kind; all nodes of a test share one fresh prefix."""
    kind: str = request.param
    url = ""
    if kind == "redis":
        url = f"{request.getfixturevalue('redis_url')}?prefix=test-{uuid.uuid4().hex}:"
    nodes: list[Node] = []

    async def make() -> Node:
        node = Node(MemoryBroker() if kind == "memory" else RedisBroker(url))
        nodes.append(node)
        await node.broker.start(node.deliver)
        return node

    yield make
    for node in nodes:
        await node.broker.close()


@pytest.fixture
async def node(make_node: MakeNode) -> Node:
    """One started node."""
    return await make_node()


@pytest.fixture
def broker(node: Node) -> Broker:
    """The broker of `node` (memory or redis)."""
    return node.broker
