"""A server whose Redis dies mid-stream: clear errors while it is down, then recovery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import free_port
from tests.integration.spawn import ROOT, spawn
from tests.redis_server import RedisProcess

APP = ROOT / "tests/integration/apps/hub"


@contextmanager
def redis_server(port: int) -> Iterator[RedisProcess]:
    """A Redis of the test's own on `port` (killed at the end of the block)."""
    server = RedisProcess(port).start()
    try:
        yield server
    finally:
        server.kill()


async def command(ws: ClientConnection, **cmd: Any) -> list[Any]:
    """Send a v1 command with an id; return replies up to its ack or error."""
    await ws.send(json.dumps(cmd))
    replies = []
    async with asyncio.timeout(10):
        while True:
            reply = json.loads(await ws.recv())
            replies.append(reply)
            if reply.get("id") == cmd["id"]:
                return replies


async def delivered(ws: ClientConnection, replies: list[Any], data: Any,
                    timeout: float = 5.0) -> bool:
    """Wait up to `timeout` until the delivery of `data` is among `replies` (it may follow
    the ack); False if it never came."""
    def found() -> bool:
        return any(r.get("type") == "message" and r.get("topic") == "t"
                   and r.get("data") == data for r in replies)

    try:
        async with asyncio.timeout(timeout):
            while not found():
                replies.append(json.loads(await ws.recv()))
    except TimeoutError:
        return False
    return True


async def test_redis_outage_is_reported_and_survived() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_server(port) as redis, spawn(APP, PUBSOCKET_BROKER=url,
                                            PUBSOCKET_LOG_LEVEL="INFO") as node:
        ws = await connect(f"ws://127.0.0.1:{node.port}/ws/chat",
                           subprotocols=["pubsocket.v1"])  # type: ignore[list-item]
        assert (await command(ws, action="subscribe", topic="t", id="s"))[-1]["type"] == "ack"
        replies = await command(ws, action="publish", topic="t", data=1, id="p1")
        assert await delivered(ws, replies, 1)

        redis.kill()
        # Every publish while Redis is away gets an error reply: nothing is dropped silently.
        reply = (await command(ws, action="publish", topic="t", data=2, id="p2"))[-1]
        assert reply["type"] == "error"
        assert reply["code"] == "broker_unavailable"

        with redis_server(port):
            # The broker reconnects and resubscribes by itself; publishes flow again. Its
            # publish connection can be back before its subscription is, and a publish in
            # between is acked but not delivered (pub/sub is at-most-once), so publish
            # until one comes back round (bounded in count and time).
            deadline = time.monotonic() + 15
            for n in range(3, 100):
                replies = await command(ws, action="publish", topic="t", data=n, id=f"p{n}")
                if replies[-1]["type"] == "ack" and await delivered(ws, replies, n, 1.0):
                    break
                assert time.monotonic() < deadline, "traffic never came back"
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("traffic never came back")
            await ws.close()
        assert node.popen.poll() is None  # the server never crashed
        assert node.popen.stdout is not None
        log = node.popen.stdout.read() or b""
        assert b"broker lost" in log
        assert b"broker regained" in log
