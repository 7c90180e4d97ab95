"""Presence on one node with real clients: presence_off, events off, the HTTP API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from pubsocket import App, pubsub
from pubsocket.auth import Authenticator
from tests.app.test_presence import ahttp
from tests.conftest import API_KEY, SECRET, make_settings

AUTH = Authenticator(API_KEY, SECRET)


async def v1(url: str, sub: str) -> ClientConnection:
    tok = AUTH.issue(sub, 60, {"info": {"name": sub}})
    return await connect(url, subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                         additional_headers={"Authorization": f"Bearer {tok}"})


async def reply(ws: ClientConnection, **cmd: Any) -> tuple[dict[str, Any], list[Any]]:
    """The reply to `cmd` and the pushes read before it."""
    await ws.send(json.dumps(cmd))
    before = []
    async with asyncio.timeout(5):
        while (msg := json.loads(await ws.recv())).get("id") != cmd["id"]:
            before.append(msg)
    return msg, before


@pytest.mark.parametrize("events", [True, False])
async def test_presence_replies_and_join_events_on_or_off(serve: Any, events: bool) -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True, presence=["room:*"], presence_events=events)
    srv = await serve(app)
    url = f"{srv.ws}/ws/chat"
    alice, bob = await v1(url, "alice"), await v1(url, "bob")
    await reply(alice, action="subscribe", topic="room:a", id="s")
    await reply(bob, action="subscribe", topic="room:a", id="s")
    who, _ = await reply(bob, action="presence", topic="room:a", id="w")
    assert sorted((c["user"], c["info"]["name"]) for c in who["clients"].values()) == [
        ("alice", "alice"), ("bob", "bob")]
    await bob.close()
    await asyncio.sleep(0.2)
    done, pushes = await reply(alice, action="publish", topic="room:a", data="x", id="p")
    assert done["type"] == "ack"
    kinds = [(p["type"], p.get("user")) for p in pushes if p["type"] in ("join", "leave")]
    if events:
        assert ("join", "bob") in kinds and ("leave", "bob") in kinds
    else:
        assert kinds == []
    off, _ = await reply(alice, action="presence_stats", topic="other", id="o")
    assert (off["type"], off["code"]) == ("error", "presence_off")
    await alice.close()


async def test_http_presence_api(serve: Any) -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True, presence=["room:*"])
    srv = await serve(app)
    ws = await v1(f"{srv.ws}/ws/chat", "carol")
    await reply(ws, action="subscribe", topic="room:b", id="s")
    status, body = await ahttp(f"{srv.http}/api/presence?topic=room:b")
    assert status == 200 and [c["user"] for c in body["clients"].values()] == ["carol"]
    status, body = await ahttp(f"{srv.http}/api/presence?topic=room:b&stats=1")
    assert (status, body) == (200, {"topic": "room:b", "connections": 1, "users": 1})
    status, body = await ahttp(f"{srv.http}/api/presence?topic=nope")
    assert (status, body["error"]) == (404, "presence_off")
    status, body = await ahttp(f"{srv.http}/api/presence?topic=bad%20topic")
    assert (status, body["error"]) == (400, "invalid_topic")
    await ws.close()
