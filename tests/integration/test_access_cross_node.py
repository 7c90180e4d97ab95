"""Server-side control and presence across nodes: real processes on one real Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pubsocket.auth import Authenticator
from tests.conftest import API_KEY, SECRET
from tests.integration.spawn import ROOT, Proc, spawn

APP = ROOT / "tests/integration/apps/control"
AUTH = Authenticator(API_KEY, SECRET)


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return {"PUBSOCKET_BROKER": f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:",
            "PUBSOCKET_PRESENCE_TTL": "1"}


def token(sub: str) -> str:
    return AUTH.issue(sub, 300, {"info": {"name": sub.title()}})


async def client(node: Proc, sub: str) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{node.port}/ws/chat",
                         subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                         additional_headers={"Authorization": f"Bearer {token(sub)}"})


SKIPPED: dict[int, list[dict[str, Any]]] = {}  # pushes `send` read past, per connection


async def send(ws: ClientConnection, **cmd: Any) -> dict[str, Any]:
    """Send a command with an id; return its reply (pushes meanwhile are kept for
    `pushes`)."""
    await ws.send(json.dumps(cmd))
    async with asyncio.timeout(5):
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == cmd["id"]:
                return reply  # type: ignore[no-any-return]
            SKIPPED.setdefault(id(ws), []).append(reply)


async def users_in(ws: ClientConnection, topic: str, want: list[str]) -> list[str]:
    """Presence of `topic` as `ws` sees it, polled (bounded) until it lists `want`: a
    subscribe is acked before its presence entry is written."""
    async with asyncio.timeout(5):
        while True:
            reply = await send(ws, action="presence", topic=topic, id="who")
            users = sorted(c["user"] for c in reply["clients"].values())
            if users == sorted(want):
                return users
            await asyncio.sleep(0.05)


async def pushes(ws: ClientConnection, until: dict[str, Any]) -> list[dict[str, Any]]:
    """Pushes received (also while `send` waited for replies) until the delivery of the
    sentinel `until` data."""
    seen = []
    for msg in SKIPPED.pop(id(ws), []):
        if msg.get("type") == "message" and msg.get("data") == until:
            return seen
        seen.append(msg)
    async with asyncio.timeout(5):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "message" and msg.get("data") == until:
                return seen
            seen.append(msg)


def post(node: Proc, path: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{node.port}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


async def test_disconnect_and_unsubscribe_a_user_on_every_node(env: dict[str, str]) -> None:
    with spawn(APP, **env) as a, spawn(APP, **env) as b:
        alice_a, alice_b, bob_b = (await client(a, "alice"), await client(b, "alice"),
                                   await client(b, "bob"))
        for ws in (alice_a, alice_b, bob_b):
            assert (await send(ws, action="subscribe", topic="room", id="s"))["type"] == "ack"
        await asyncio.to_thread(post, a, "/drop", {"user": "alice", "topic": "room"})
        async with asyncio.timeout(5):  # presence is on: join pushes may come first
            while (notice := json.loads(await alice_b.recv()))["type"] in ("join", "leave"):
                pass
        assert notice == {"type": "unsubscribed", "topic": "room",
                          "reason": "unsubscribed by the server"}
        await asyncio.to_thread(post, a, "/kick", {"user": "alice"})
        for ws in (alice_a, alice_b):
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            assert ws.close_code == 4003
        reply = await send(bob_b, action="publish", topic="room", data="still here", id="p")
        assert reply["type"] == "ack"  # bob was not touched
        await bob_b.close()


async def test_presence_and_join_leave_across_nodes_once_per_user(
        env: dict[str, str]) -> None:
    with spawn(APP, **env) as a, spawn(APP, **env) as b:
        alice = await client(a, "alice")
        assert (await send(alice, action="subscribe", topic="lobby", id="s"))["type"] == "ack"
        bob = await client(b, "bob")
        assert (await send(bob, action="subscribe", topic="lobby", id="s"))["type"] == "ack"
        bob_tab = await client(a, "bob")  # bob's second tab, on the other node
        assert (await send(bob_tab, action="subscribe", topic="lobby", id="s"))["type"] == "ack"
        assert await users_in(alice, "lobby", ["alice", "bob", "bob"]) == ["alice", "bob", "bob"]
        stats = await send(bob, action="presence_stats", topic="lobby", id="st")
        assert (stats["connections"], stats["users"]) == (3, 2)
        await bob_tab.close()  # not bob's last connection: no leave
        await asyncio.sleep(0.3)
        await send(bob, action="publish", topic="lobby", data="mark-1", id="m1")
        seen = [(p["type"], p.get("user")) for p in await pushes(alice, "mark-1")]
        assert seen.count(("join", "bob")) == 1 and ("leave", "bob") not in seen
        await bob.close()  # bob's last connection: one leave, seen on the other node
        await asyncio.sleep(0.3)
        await send(alice, action="publish", topic="lobby", data="mark-2", id="m2")
        seen = [(p["type"], p.get("user")) for p in await pushes(alice, "mark-2")]
        assert seen == [("leave", "bob")]
        await alice.close()


async def test_a_killed_node_leaves_no_ghost_after_the_ttl(env: dict[str, str]) -> None:
    with spawn(APP, **env) as a, spawn(APP, **env) as b:
        watcher = await client(a, "watcher")
        assert (await send(watcher, action="subscribe", topic="room", id="s"))["type"] == "ack"
        ghost = await client(b, "ghost")
        assert (await send(ghost, action="subscribe", topic="room", id="s"))["type"] == "ack"
        assert await users_in(watcher, "room", ["watcher", "ghost"]) == ["ghost", "watcher"]
        b.popen.kill()  # SIGKILL: no cleanup on node B
        b.popen.wait(5)
        async with asyncio.timeout(5):  # TTL 1 s (refreshed every 1/3 s by live nodes)
            while True:
                reply = await send(watcher, action="presence", topic="room", id="w")
                if {c["user"] for c in reply["clients"].values()} == {"watcher"}:
                    break
                await asyncio.sleep(0.2)
        stats = await send(watcher, action="presence_stats", topic="room", id="st")
        assert (stats["connections"], stats["users"]) == (1, 1)
        await watcher.close()
