"""A server whose Redis dies mid-stream: clear errors while it is down, then recovery."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import free_port
from tests.integration.spawn import ROOT, spawn

APP = ROOT / "tests/integration/apps/hub"


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                             check=False).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


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


async def delivered(ws: ClientConnection, replies: list[Any], data: Any) -> None:
    """Wait (bounded) until the delivery of `data` is among `replies` (it may follow the ack)."""
    delivery = {"type": "message", "topic": "t", "data": data}
    async with asyncio.timeout(5):
        while delivery not in replies:
            replies.append(json.loads(await ws.recv()))


async def test_redis_outage_is_reported_and_survived() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_server(port) as redis, spawn(APP, PUBSOCKET_BROKER=url,
                                            PUBSOCKET_LOG_LEVEL="INFO") as node:
        ws = await connect(f"ws://127.0.0.1:{node.port}/ws/chat",
                           subprotocols=["pubsocket.v1"])  # type: ignore[list-item]
        assert (await command(ws, action="subscribe", topic="t", id="s"))[-1]["type"] == "ack"
        replies = await command(ws, action="publish", topic="t", data=1, id="p1")
        await delivered(ws, replies, 1)

        redis.kill()
        redis.wait(5)
        # Every publish while Redis is away gets an error reply: nothing is dropped silently.
        reply = (await command(ws, action="publish", topic="t", data=2, id="p2"))[-1]
        assert reply["type"] == "error"
        assert reply["code"] == "broker_unavailable"

        with redis_server(port):
            # The broker reconnects and resubscribes by itself; publishes flow again.
            deadline = time.monotonic() + 15
            while True:
                replies = await command(ws, action="publish", topic="t", data=3, id="p3")
                if replies[-1]["type"] == "ack":
                    break
                assert time.monotonic() < deadline, "traffic never came back"
                await asyncio.sleep(0.2)
            await delivered(ws, replies, 3)
            await ws.close()
        assert node.popen.poll() is None  # the server never crashed
        assert node.popen.stdout is not None
        log = node.popen.stdout.read() or b""
        assert b"broker lost" in log
        assert b"broker regained" in log
