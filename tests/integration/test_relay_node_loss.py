"""A routed command whose node is gone is refused, not lost: two `pubsocket serve`
processes on one real Redis, an HTTP stream (the pubsocket.v1 fallback) open on node A,
its commands POSTed to node B. While A holds its ``$n:<node>`` channel, B's POST answers
204 and the command runs on A. Once A is SIGKILLed, or its own Redis link is cut (a TCP
proxy between A and Redis that aborts every connection and refuses new ones), B's
PUBLISH reaches nobody and B answers 404 ``unknown_session`` at once, so the client
reconnects instead of waiting for its command timeout (hub/relay.py "Nobody received
it")."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from redis.asyncio import Redis

from tests.fallback.client import HttpStream, request
from tests.integration.spawn import ROOT, Proc, spawn
from tests.link_proxy import Link

APP = ROOT / "tests/integration/apps/hub"  # pubsub("/ws/chat"), open: no token needed
OPEN = "/ws/chat?transport=http_stream"
EMULATE = "/ws/chat?transport=emulation"
# Seconds: one POST and PUBLISH round trip (ms), with room for a loaded box; anything
# timed (a wait for A's reply, an SDK's command timeout of 3 s and up) takes longer.
PROMPT = 2.5


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A client of the test Redis, and a broker URL with a prefix of this test's own."""
    client = Redis.from_url(redis_url)
    try:
        yield client, f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"
    finally:
        await client.aclose()


async def open_stream(port: int) -> tuple[HttpStream, dict[str, Any]]:
    stream = await HttpStream.post(port, OPEN, b"[]", {"Content-Type": "application/json"})
    assert stream.status == 200, await stream.body()
    hello = await stream.line()
    assert hello["type"] == "transport", hello
    return stream, hello


async def post(port: int, hello: dict[str, Any], command: dict[str, Any]) -> tuple[int, bytes]:
    status, _, body = await request(port, EMULATE, {
        "session": hello["session"], "node": hello["node"], "data": [command]})
    return status, body


async def numsub(client: Redis, channel: str) -> int:
    [(_, count)] = await client.pubsub_numsub(channel)
    return int(count)


async def until_numsub(client: Redis, channel: str, want: int, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while await numsub(client, channel) != want:
            await asyncio.sleep(0.02)


async def routed_and_run(a: Proc, b: Proc, stream: HttpStream, hello: dict[str, Any],
                         command_id: int) -> None:
    """The normal path: B answers 204 and the command runs on A (its ack on A's stream)."""
    status, body = await post(b.port, hello, {"action": "subscribe", "topic": f"t{command_id}",
                                              "id": command_id})
    assert (status, body) == (204, b"")
    await stream.until({"type": "ack", "id": command_id})


async def refused_promptly(b: Proc, hello: dict[str, Any]) -> None:
    started = time.monotonic()
    status, body = await post(b.port, hello, {"action": "subscribe", "topic": "lost", "id": 99})
    elapsed = time.monotonic() - started
    assert status == 404, body
    assert orjson.loads(body)["error"] == "unknown_session"
    assert elapsed < PROMPT, elapsed


async def test_a_killed_node_makes_posts_for_its_sessions_404(
        redis: tuple[Redis, str]) -> None:
    client, url = redis
    with spawn(APP, PUBSOCKET_BROKER=url) as a, spawn(APP, PUBSOCKET_BROKER=url) as b:
        stream, hello = await open_stream(a.port)
        channel = f"{urlsplit(url).query.partition('prefix=')[2]}$n:{hello['node']}"
        await until_numsub(client, channel, 1)  # A's relay listens
        await routed_and_run(a, b, stream, hello, 1)

        a.popen.kill()  # SIGKILL: no shutdown, the kernel closes A's sockets
        await asyncio.to_thread(a.popen.wait, 10)
        await until_numsub(client, channel, 0)  # Redis saw A's subscriber go
        await refused_promptly(b, hello)
        await stream.close()


async def test_a_node_cut_from_redis_makes_posts_404_then_routes_again(
        redis: tuple[Redis, str], redis_url: str) -> None:
    """A's link to Redis cut while A runs and its stream stays open: B answers 404 (the
    client would reconnect). Link back: A re-subscribes and B routes to the same
    session again, 204, and it runs there."""
    client, url = redis
    target = urlsplit(redis_url)
    assert target.hostname == "127.0.0.1" and target.port is not None
    link = Link(target.port)
    await link.start()
    port = link.port
    a_url = url.replace(f"127.0.0.1:{target.port}", f"127.0.0.1:{port}")
    with spawn(APP, PUBSOCKET_BROKER=a_url) as a, spawn(APP, PUBSOCKET_BROKER=url) as b:
        try:
            stream, hello = await open_stream(a.port)
            channel = f"{urlsplit(url).query.partition('prefix=')[2]}$n:{hello['node']}"
            await until_numsub(client, channel, 1)
            await routed_and_run(a, b, stream, hello, 1)

            await link.close()  # every connection of A to Redis aborted, none accepted
            await until_numsub(client, channel, 0)
            await refused_promptly(b, hello)

            link = Link(target.port, port)  # A reconnects by itself (backoff)
            await link.start()
            await until_numsub(client, channel, 1, timeout=15)
            await routed_and_run(a, b, stream, hello, 2)  # the session lived on A
            await stream.close()
        finally:
            await link.close()
