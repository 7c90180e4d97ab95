"""Shared pieces of the outbox tests: a broker-level subscriber on a fresh Redis prefix,
the relay as a real subprocess, and an in-process relay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import orjson

from pubsocket.brokers.base import HistoryPolicy
from pubsocket.brokers.redis import RedisBroker
from pubsocket.outbox.relay import Relay
from tests.brokers.conftest import Node, delete_keys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HISTORY = HistoryPolicy(size=2000, ttl=120.0)


def prefixed(redis_url: str) -> tuple[str, str]:
    """(broker URL with a fresh channel prefix, the prefix)."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    return f"{redis_url}?prefix={prefix}", prefix


@asynccontextmanager
async def subscriber(redis_url: str, broker_url: str, *topics: str) -> AsyncIterator[Node]:
    """A started Redis broker subscribed to `topics`: what every node would receive."""
    node = Node(RedisBroker(broker_url, meta_ttl=120.0))
    await node.broker.start(node.deliver, node.resync)
    try:
        for topic in topics:
            await node.broker.subscribe(topic)
        yield node
    finally:
        await node.broker.close()
        await delete_keys(redis_url, broker_url.rpartition("prefix=")[2])


@asynccontextmanager
async def publishing_broker(broker_url: str) -> AsyncIterator[RedisBroker]:
    """A started Redis broker for a relay to publish with (it subscribes to nothing),
    closed at the end."""
    broker = RedisBroker(broker_url, meta_ttl=120.0)
    await broker.start(lambda t, p: None)
    try:
        yield broker
    finally:
        await broker.close()


def data_of(node: Node, topic: str) -> list[Any]:
    return [orjson.loads(payload) for t, payload in node.received if t == topic]


async def wait_count(node: Node, count: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while len(node.received) < count:
            await asyncio.sleep(0.01)


@contextmanager
def relay_process(dsn: str, broker_url: str, table: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``pubsocket outbox relay`` as a subprocess; the list holds the current process
    (tests replace it after a kill); every one is stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = [start_relay(dsn, broker_url, table)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


def start_relay(dsn: str, broker_url: str, table: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PUBSOCKET_LOG_LEVEL": "WARNING", "PUBSOCKET_HISTORY_SIZE": "2000"}
    return subprocess.Popen(
        [sys.executable, "-m", "pubsocket", "outbox", "relay", "--dsn", dsn,
         "--broker", broker_url, "--table", table],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip


@asynccontextmanager
async def running(relay: Relay, active: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    """Run `relay` in a task (waiting until it holds the lock, if `active`)."""
    task = asyncio.create_task(relay.run())
    try:
        if active:
            async with asyncio.timeout(10):
                await relay.active.wait()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
