"""No sticky sessions, in real servers: two `pubsocket serve` processes on one real Redis
behind the round-robin proxy. A WebSocket registered with node A's relay
(apps/relay) receives the commands POSTed through the proxy, half of which land on
node B and cross Redis (`hub.relay`)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.conftest import API_KEY
from tests.integration.spawn import ROOT, Proc, spawn
from tests.redis_server import RedisProcess
from tests.round_robin_proxy import round_robin_proxy

APP = ROOT / "tests/integration/apps/relay"


def env_for(redis_url: str) -> dict[str, str]:
    return {"PUBSOCKET_BROKER": f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:",
            "PUBSOCKET_MAX_MESSAGE_SIZE": "1024"}


@pytest.fixture
def nodes(redis_url: str) -> Iterator[tuple[Proc, Proc]]:
    env = env_for(redis_url)
    with spawn(APP, **env) as a, spawn(APP, **env) as b:
        yield a, b


def post(port: int, body: dict[str, Any]) -> tuple[int, str]:
    """POST /relay; the status and the relay's result."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/relay", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())["result"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["result"]


async def open_session(port: int) -> tuple[ClientConnection, dict[str, str]]:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/relay")
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 5))


async def received(ws: ClientConnection, count: int) -> list[str]:
    async with asyncio.timeout(5):
        return [str(await ws.recv()) for _ in range(count)]


async def test_posts_through_a_round_robin_proxy_reach_the_session_on_either_node(
        nodes: tuple[Proc, Proc]) -> None:
    a, b = nodes
    async with round_robin_proxy([a.port, b.port]) as proxy:
        ws, hello = await open_session(proxy.port)  # the first connection: node A
        results = []
        for i in range(10):  # one connection each: B, A, B, A, ...
            body = {**hello, "data": f"cmd {i}"}
            results.append(await asyncio.to_thread(post, proxy.port, body))
        assert proxy.backends_of(b"GET /ws/relay") == [0]
        assert proxy.backends_of(b"POST /relay") == [1, 0] * 5
        assert results == [(200, "sent"), (200, "local_fed")] * 5
        got = await received(ws, 10)
        # Each node's commands in the order they were routed; all of them, once.
        assert [m for m in got if int(m[4:]) % 2 == 0] == [f"cmd {i}" for i in range(0, 10, 2)]
        assert sorted(got, key=lambda m: int(m[4:])) == [f"cmd {i}" for i in range(10)]
        await ws.close()


async def test_unknown_sessions_and_oversized_commands_get_their_status(
        nodes: tuple[Proc, Proc]) -> None:
    a, b = nodes
    ws, hello = await open_session(a.port)
    gone = {**hello, "session": "gone", "data": "x"}
    assert await asyncio.to_thread(post, a.port, gone) == (404, "unknown_session")
    # B cannot know A's sessions without asking A: handed over, dropped on A.
    assert await asyncio.to_thread(post, b.port, gone) == (200, "sent")
    big = {**hello, "data": "x" * 1025}  # over PUBSOCKET_MAX_MESSAGE_SIZE
    assert await asyncio.to_thread(post, b.port, big) == (413, "too_large")
    assert await asyncio.to_thread(post, a.port, big) == (413, "too_large")
    # The session got nothing of all that, and still gets what is meant for it.
    assert await asyncio.to_thread(post, b.port, {**hello, "data": "ok"}) == (200, "sent")
    assert await received(ws, 1) == ["ok"]
    await ws.close()
    await asyncio.sleep(0.1)  # A unregisters the session as the socket closes
    assert await asyncio.to_thread(post, a.port, {**hello, "data": "late"}) == (
        404, "unknown_session")


async def test_a_broker_outage_is_503_and_routing_resumes_after_it() -> None:
    redis = RedisProcess().start()
    try:
        env = env_for(redis.url)
        with spawn(APP, **env) as a, spawn(APP, **env) as b:
            ws, hello = await open_session(a.port)
            assert await asyncio.to_thread(post, b.port, {**hello, "data": "1"}) == (200, "sent")
            assert await received(ws, 1) == ["1"]
            redis.kill()
            await _poll(lambda: post(b.port, {**hello, "data": "lost"}), (503, "unavailable"))
            redis = RedisProcess(redis.port).start()
            # Both nodes reconnect and re-subscribe by themselves (bounded backoff). Until
            # A's node channel is confirmed again, what B hands over is lost (documented):
            # send until one arrives.
            got = await asyncio.wait_for(_until_received(ws, b.port, hello), 15)
            assert got.startswith("after ")  # never "lost": a 503 was not handed over
            await ws.close()
    finally:
        redis.kill()


async def _until_received(ws: ClientConnection, port: int, hello: dict[str, str]) -> str:
    for k in range(1000):
        status = await asyncio.to_thread(post, port, {**hello, "data": f"after {k}"})
        if status == (200, "sent"):
            try:
                return str(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
        await asyncio.sleep(0.1)
    raise AssertionError("never routed again")


async def _poll(call: Any, want: tuple[int, str], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while await asyncio.to_thread(call) != want:
            await asyncio.sleep(0.1)


async def test_the_proxy_refuses_websocket_upgrades_when_asked(
        nodes: tuple[Proc, Proc]) -> None:
    a, b = nodes
    async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{proxy.port}/ws/relay")
        assert refused.value.response.status_code == 403 and proxy.refused == 1
        assert proxy.routed == []  # never reached a node
        status = await asyncio.to_thread(post, proxy.port, {"node": "not a node",
                                                            "session": "s", "data": ""})
        assert status == (404, "unknown_session") and proxy.backends_of(b"POST") == [0]
