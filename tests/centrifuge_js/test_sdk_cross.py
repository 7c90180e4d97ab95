"""One publication crossing protocols, both ways: centrifuge-js on the Centrifuge
endpoint and the seed protocol on /ws/chat (a `websockets` client and `websocat`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.centrifuge_js.conftest import StartCf, cf_url, token
from tests.centrifuge_js.harness import sdk_client
from tests.tools import require


async def plain_recv(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), 5.0))


async def plain_subscribed(ws: ClientConnection, topic: str) -> None:
    """Plain mode has no acks: its own publication coming back proves the subscription."""
    await ws.send(json.dumps({"action": "subscribe", "topic": topic}))
    await ws.send(json.dumps({"action": "publish", "topic": topic, "data": "echo"}))
    assert await plain_recv(ws) == "echo"


async def test_publication_crosses_protocols_both_ways(start_cf: StartCf) -> None:
    srv = await start_cf()
    async with connect(f"{srv.ws}/ws/chat") as plain, sdk_client(
            cf_url(srv.port), token=token("alice")) as sdk:
        await plain_subscribed(plain, "chat:x")
        sdk.send("connect")
        sdk.send("sub", channel="chat:x", opts={"recoverable": True, "positioned": True})
        await sdk.expect("subscribed")
        await plain.send(json.dumps({"action": "publish", "topic": "chat:x",
                                     "data": {"from": "plain"}}))
        got = await sdk.expect("publication", lambda e: e["data"] == {"from": "plain"})
        assert got["offset"] == 2  # the echo was offset 1
        assert await plain_recv(plain) == {"from": "plain"}  # its own, too
        res = await sdk.request("publish", "chat:x", data={"from": "sdk"})
        assert res["ok"], res
        assert await plain_recv(plain) == {"from": "sdk"}
        assert (await sdk.expect("publication"))["data"] == {"from": "sdk"}
        assert [e["offset"] for e in sdk.publications("chat:x")] == [2, 3]


async def test_websocat_and_centrifuge_js_see_each_other(start_cf: StartCf) -> None:
    websocat = require("websocat", "the seed protocol's command-line client")
    srv = await start_cf()
    proc = await asyncio.create_subprocess_exec(
        websocat, "-t", f"ws://127.0.0.1:{srv.port}/ws/chat",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    async def line() -> Any:
        assert proc.stdout is not None
        return json.loads(await asyncio.wait_for(proc.stdout.readline(), 5.0))

    def say(obj: Any) -> None:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(obj) + "\n").encode())

    try:
        async with sdk_client(cf_url(srv.port), token=token("alice")) as sdk:
            say({"action": "subscribe", "topic": "chat:w"})
            say({"action": "publish", "topic": "chat:w", "data": "echo"})
            assert await line() == "echo"
            sdk.send("connect")
            sdk.send("sub", channel="chat:w")
            await sdk.expect("subscribed")
            say({"action": "publish", "topic": "chat:w", "data": {"via": "websocat"}})
            got = await sdk.expect("publication", lambda e: e["data"] == {"via": "websocat"})
            assert got["channel"] == "chat:w"
            assert await line() == {"via": "websocat"}
            res = await sdk.request("publish", "chat:w", data={"via": "sdk"})
            assert res["ok"], res
            assert await line() == {"via": "sdk"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
