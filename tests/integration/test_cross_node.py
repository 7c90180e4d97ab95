"""Two server processes on one Redis behave as one hub; --workers shares a port."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import API_KEY, free_port
from tests.integration.spawn import ROOT, spawn

APP = ROOT / "tests/integration/apps/hub"
KEY = {"Authorization": f"Bearer {API_KEY}"}  # /metrics needs the API key


@pytest.fixture
def url(redis_url: str) -> str:
    """The session's Redis with a prefix of this test's own (spawned servers get it)."""
    return f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"


async def subscriber(port: int, topic: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/chat", subprotocols=["pubsocket.v1"])  # type: ignore[list-item]
    await ws.send(json.dumps({"action": "subscribe", "topic": topic, "id": "s"}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert (ack["type"], ack["id"], ack["topic"]) == ("ack", "s", topic)
    return ws


def post(url: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status)


async def recv_data(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))["data"]


async def test_two_nodes_form_one_hub_through_every_publish_path(url: str) -> None:
    with spawn(APP, PUBSOCKET_BROKER=url) as a, spawn(APP, PUBSOCKET_BROKER=url) as b:
        on_a = await subscriber(a.port, "room")
        on_b = await subscriber(b.port, "room")
        # 1. a WebSocket publish on node A reaches node B (and A)
        async with connect(f"ws://127.0.0.1:{a.port}/ws/chat") as pub:
            await pub.send(json.dumps({"action": "publish", "topic": "room", "data": 1}))
            assert await recv_data(on_b) == 1
            assert await recv_data(on_a) == 1
        # 2. hub.publish from a route on node B reaches node A
        await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{b.port}/publish/room")
        assert await recv_data(on_a) == {"via": "route"}
        assert await recv_data(on_b) == {"via": "route"}
        # 3. POST /api/publish on node A reaches node B
        status = await asyncio.to_thread(post, f"http://127.0.0.1:{a.port}/api/publish",
                                         {"topic": "room", "data": "http"})
        assert status == 200
        assert await recv_data(on_b) == "http"
        assert await recv_data(on_a) == "http"
        await on_a.close()
        await on_b.close()


async def test_order_per_topic_per_publisher_holds_across_nodes(url: str) -> None:
    with spawn(APP, PUBSOCKET_BROKER=url, PUBSOCKET_RATE_LIMIT="0",
               PUBSOCKET_PUBLISH_BYTE_RATE="0") as a, \
            spawn(APP, PUBSOCKET_BROKER=url) as b:
        on_b = await subscriber(b.port, "seq")
        async with connect(f"ws://127.0.0.1:{a.port}/ws/chat") as pub:
            for i in range(2000):
                await pub.send(json.dumps({"action": "publish", "topic": "seq", "data": i}))
            got = [await recv_data(on_b) for _ in range(2000)]
        assert got == list(range(2000))
        await on_b.close()


async def test_workers_share_one_port_and_one_hub(url: str) -> None:
    port = free_port()
    with spawn(APP, port=port, PUBSOCKET_BROKER=url, PUBSOCKET_WORKERS="2"):
        # SO_REUSEPORT spreads connections over both workers; with enough connections
        # both are used, and every subscriber still sees every message.
        subs = [await subscriber(port, "w") for _ in range(12)]
        async with connect(f"ws://127.0.0.1:{port}/ws/chat") as pub:
            await pub.send(json.dumps({"action": "publish", "topic": "w", "data": "all"}))
            for ws in subs:
                assert await recv_data(ws) == "all"
        for ws in subs:
            await ws.close()

        def pid() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=5) as resp:
                return int(json.loads(resp.read())["pid"])

        pids = {await asyncio.to_thread(pid) for _ in range(40)}
        assert len(pids) == 2  # both workers answer on the one port


def test_workers_without_a_shared_broker_is_a_startup_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pubsocket", "serve", str(APP), "--workers", "2",
         "--port", str(free_port())],
        capture_output=True, timeout=30, check=False, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PUBSOCKET_BROKER": "memory://"},
    )
    assert result.returncode == 2
    assert b"shared broker" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_metrics_name_the_broker_counters(kind: str, request: pytest.FixtureRequest) -> None:
    broker = request.getfixturevalue("url") if kind == "redis" else "memory://"
    with spawn(APP, PUBSOCKET_BROKER=broker) as node:
        def scrape() -> str:
            with urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{node.port}/metrics", headers=KEY), timeout=5) as r:
                return str(r.read().decode())
        text = await asyncio.to_thread(scrape)
        assert "pubsocket_broker_reconnects_total 0.0" in text
