"""Presence fixtures: every contract test runs on memory and on a real Redis (the
session's own, from `tests/conftest.py`'s `redis_url`, or PUBSOCKET_TEST_REDIS).

All nodes of one test share a store: one `MemoryPresenceStore`, or one fresh Redis key
prefix (deleted by SCAN afterwards; the shared Redis is never flushed).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from pubsocket.presence import MemoryPresence, MemoryPresenceStore, Presence
from pubsocket.presence.redis import RedisPresence

MakePresence = Callable[..., Awaitable[Presence]]


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (SCAN + DEL: the shared Redis is never flushed)."""
    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


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
    nodes: list[Presence] = []

    async def make(ttl: float = 60.0, start: bool = True) -> Presence:
        node: Presence = (MemoryPresence(store) if kind == "memory"
                          else RedisPresence(url, prefix=prefix, ttl=ttl))
        nodes.append(node)
        if start:
            await node.start()
        return node

    yield make
    for node in nodes:
        await node.close()
    if kind == "redis":
        await delete_prefix(url, prefix)


@pytest.fixture
async def make_redis(redis_url: str, prefix: str) -> AsyncIterator[MakePresence]:
    """Redis nodes only (TTL and crash tests), on this test's prefix."""
    nodes: list[Presence] = []

    async def make(ttl: float = 60.0, start: bool = True) -> Presence:
        node = RedisPresence(redis_url, prefix=prefix, ttl=ttl)
        nodes.append(node)
        if start:
            await node.start()
        return node

    yield make
    for node in nodes:
        await node.close()
    await delete_prefix(redis_url, prefix)
