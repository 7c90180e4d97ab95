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
from typing import Any

import pytest

from pubsocket.brokers import Broker, MemoryBroker
from pubsocket.brokers.base import HistoryPolicy, Publication, Publisher
from pubsocket.brokers.redis import RedisBroker
from tests.brokers.hubs import RedisHubs

HISTORY = HistoryPolicy(size=100, ttl=60.0)  # what the contract tests publish with
TEST_META_TTL = 120.0  # keys the tests leave behind in a shared Redis expire soon


@dataclass
class Node:
    """A started broker and what it delivered, in order."""

    broker: Broker
    received: list[tuple[str, bytes]] = field(default_factory=list)
    publications: list[tuple[str, Publication]] = field(default_factory=list)
    resyncs: int = 0

    def deliver(self, topic: str, pub: Publication) -> None:
        self.received.append((topic, pub.payload))
        self.publications.append((topic, pub))

    def resync(self) -> None:
        self.resyncs += 1

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


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture(params=["memory", "redis"])
async def make_node(request: pytest.FixtureRequest) -> AsyncIterator[MakeNode]:
    """Start nodes of one broker kind; all nodes of a test share one fresh prefix."""
    kind: str = request.param
    url = ""
    if kind == "redis":
        url = f"{request.getfixturevalue('redis_url')}?prefix=test-{uuid.uuid4().hex}:"
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        """A started node; `options` go to the broker's constructor (e.g. max_bytes)."""
        broker: Broker = (
            MemoryBroker(**options)
            if kind == "memory"
            else RedisBroker(url, **{"meta_ttl": TEST_META_TTL, **options})
        )
        node = Node(broker)
        nodes.append(node)
        await node.broker.start(node.deliver, node.resync)
        return node

    yield make
    for node in nodes:
        await node.broker.close()
    if kind == "redis":
        await delete_keys(request.getfixturevalue("redis_url"), url.rpartition("prefix=")[2])


async def publish_all(broker: Broker, topic: str, payloads: list[bytes],
                      policy: HistoryPolicy = HISTORY,
                      publisher: Publisher | None = None) -> list[Publication]:
    """Publish without awaiting in between (the pipelined path), then collect in order."""
    started = [broker.publish_nowait(topic, p, policy, publisher) for p in payloads]
    out: list[Publication] = []
    for payload, res in zip(payloads, started, strict=True):
        if res is None:
            res = await broker.publish(topic, payload, policy, publisher)
        elif isinstance(res, asyncio.Future):
            res = await res
        out.append(res)
    return out


async def delete_keys(url: str, prefix: str) -> int:
    """Delete the keys under `prefix` (never FLUSHDB: the test Redis is shared)."""
    from redis.asyncio import Redis

    assert prefix, "refusing to delete every key"
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        await client.aclose()


@pytest.fixture
async def node(make_node: MakeNode) -> Node:
    """One started node."""
    return await make_node()


@pytest.fixture
def broker(node: Node) -> Broker:
    """The broker of `node` (memory or redis)."""
    return node.broker


@pytest.fixture
async def redis_hubs(redis_url: str) -> AsyncIterator[RedisHubs]:
    """Hubs on one fresh prefix of the test Redis (tests/brokers/hubs.py), closed at the
    end of the test."""
    hubs = RedisHubs(redis_url)
    yield hubs
    await hubs.close()
