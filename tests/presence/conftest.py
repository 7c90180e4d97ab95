"""Presence fixtures: every contract test runs on memory and on a real Redis (the
session's own, from `tests/conftest.py`'s `redis_url`, or PUBSOCKET_TEST_REDIS).

All nodes of one test share a store: one `MemoryPresenceStore`, or one fresh Redis key
prefix (deleted by SCAN afterwards; the shared Redis is never flushed).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pubsocket.presence import MemoryPresence, MemoryPresenceStore, Presence
from pubsocket.presence.redis import RedisPresence
from tests.brokers.conftest import delete_keys

MakePresence = Callable[..., Awaitable[Presence]]


class Nodes:
    """Presence nodes made by `new(ttl)`, started on request, all closed by `close`."""

    def __init__(self, new: Callable[[float], Presence]) -> None:
        self.new = new
        self.nodes: list[Presence] = []

    async def make(self, ttl: float = 60.0, start: bool = True) -> Presence:
        node = self.new(ttl)
        self.nodes.append(node)
        if start:
            await node.start()
        return node

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix for this test."""
    return f"test-presence-{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "redis"])
async def make_node(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[MakePresence]:
    """``await make_node(ttl=60.0, start=True)``: nodes of one kind sharing one store."""
    kind: str = request.param
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    store = MemoryPresenceStore()
    nodes = Nodes(lambda ttl: MemoryPresence(store) if kind == "memory"
                  else RedisPresence(url, prefix=prefix, ttl=ttl))
    yield nodes.make
    await nodes.close()
    if kind == "redis":
        await delete_keys(url, prefix)


@pytest.fixture
async def make_redis(redis_url: str, prefix: str) -> AsyncIterator[MakePresence]:
    """Redis nodes only (TTL and crash tests), on this test's prefix."""
    nodes = Nodes(lambda ttl: RedisPresence(redis_url, prefix=prefix, ttl=ttl))
    yield nodes.make
    await nodes.close()
    await delete_keys(redis_url, prefix)
