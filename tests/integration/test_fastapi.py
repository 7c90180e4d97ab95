"""examples/fastapi under uvicorn in a subprocess: pubsocket mounted at /rt, started by
FastAPI's lifespan, tokens from the app's own login route; driven by websockets, our
Python client and plain HTTP. (Its page in Chromium: tests/browser/test_mounted.py.)"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

import pubsocket.client as pc
from tests.conftest import API_KEY
from tests.integration.spawn import ROOT
from tests.integration.uvicorn_proc import Host, uvicorn_host

pytest.importorskip("fastapi")

ADMIN = {"Authorization": f"Bearer {API_KEY}"}


def call(url: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={
        "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            raw = reply.read()
            status = reply.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


async def acall(url: str, body: object = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return await asyncio.to_thread(call, url, body, headers)


async def login(host: Host, user: str, password: str) -> str:
    status, body = await acall(f"{host.http}/login", {"username": user, "password": password})
    assert status == 200, body
    token: str = body["token"]
    return token


async def connections(host: Host) -> int:
    status, body = await acall(f"{host.http}/rt/admin/stats", headers=ADMIN)
    assert status == 200, body
    count: int = body["connections"]
    return count


async def test_fastapi_example_login_mount_and_publish_from_a_route() -> None:
    with uvicorn_host("app:app", str(ROOT / "examples/fastapi")) as host:
        assert (await acall(f"{host.http}/login", {"username": "alice",
                                                     "password": "nope"}))[0] == 401
        alice = await login(host, "alice", "wonderland")

        # Every route lives under the mount; nothing of pubsocket at the host's root.
        assert (await acall(f"{host.http}/rt/pubsocket.js"))[0] == 200
        assert (await acall(f"{host.http}/pubsocket.js"))[0] == 404
        status, page = await acall(f"{host.http}/rt/admin")
        assert status == 200 and b"/rt/admin/admin.js" in page
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(f"{host.ws}/rt/ws/chat"):
                pass
        assert refused.value.response.status_code == 401

        # A plain WebSocket with the login's token, and our client with a token callable
        # (called on every connect, as after the 10-minute expiry).
        async with connect(f"{host.ws}/rt/ws/chat",
                           additional_headers={"Authorization": f"Bearer {alice}"}) as ws, \
                pc.connect(f"{host.ws}/rt/ws/chat",
                           token=lambda: login(host, "bob", "builder")) as bob:
            await ws.send(json.dumps({"action": "subscribe", "topic": "news"}))
            news = await bob.subscribe("news")
            lobby = await bob.subscribe("room:lobby")
            assert await connections(host) == 2
            # Publishing from an ordinary FastAPI route reaches both (the lifespan started
            # the hub: a publish before startup would fail).
            status, body = await acall(f"{host.http}/announce", {"text": "hello"})
            assert status == 200, body
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"text": "hello"}
            async with asyncio.timeout(5):
                event = await anext(aiter(news))
            assert isinstance(event, pc.Message) and event.data == {"text": "hello"}
            # The login's topics claim: bob may publish to rooms, not to news.
            await bob.publish("room:lobby", {"text": "hi"})
            async with asyncio.timeout(5):
                mine = await anext(aiter(lobby))
            assert isinstance(mine, pc.Message) and mine.publisher is not None
            assert (mine.publisher.user, mine.publisher.info) == ("bob", {"name": "Bob"})
            with pytest.raises(pc.Forbidden):
                await bob.publish("news", {"text": "forged"})

        # Both left: the gauge is back to 0 (under uvicorn it went -1 per client).
        async with asyncio.timeout(5):
            while await connections(host) != 0:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert await connections(host) == 0
