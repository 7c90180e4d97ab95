"""Broker fixtures: every contract test runs against `memory` and a real Redis.

Each Redis test gets its own channel prefix, so tests never see each other's traffic.
The Redis on 127.0.0.1:6379 (or ``PUBSOCKET_TEST_REDIS``) is required: CI starts one, and
a missing server fails the redis tests loudly instead of skipping them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from pubsocket.brokers import Broker, MemoryBroker
from pubsocket.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("PUBSOCKET_TEST_REDIS", "redis://127.0.0.1:6379/0")


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


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL, after checking that something answers there."""
    parts = urlsplit(REDIS_URL)
    address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    try:
        with socket.create_connection(address, timeout=1.0):
            pass
    except OSError as exc:
        pytest.fail(
            f"no Redis answers on {address[0]}:{address[1]} ({exc}). The redis broker tests "
            "need one: run `redis-server` (CI starts it) or set PUBSOCKET_TEST_REDIS.",
            pytrace=False,
        )
    return REDIS_URL


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
