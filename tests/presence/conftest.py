"""Presence fixtures: every contract test runs on memory and on a real Redis.

All nodes of one test share a store: one `MemoryPresenceStore`, or one fresh Redis key
prefix (deleted by SCAN afterwards; the shared Redis is never flushed).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from pubsocket.presence import MemoryPresence, MemoryPresenceStore, Presence
from pubsocket.presence.redis import RedisPresence

REDIS_URL = os.environ.get("PUBSOCKET_TEST_REDIS", "redis://127.0.0.1:6379/0")

MakePresence = Callable[..., Awaitable[Presence]]


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL, after checking that something answers there (else fail loudly)."""
    parts = urlsplit(REDIS_URL)
    address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    try:
        with socket.create_connection(address, timeout=1.0):
            pass
    except OSError as exc:
        pytest.fail(f"no Redis answers on {address[0]}:{address[1]} ({exc}); the presence "
                    "tests need one (run `redis-server` or set PUBSOCKET_TEST_REDIS)",
                    pytrace=False)
    return REDIS_URL


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
