"""``/pubsocket.js`` under Node against a real server (issue 19): Node 20 has no
WebSocket of its own, so the client connects over the pubsocket.v1 HTTP transport
(fetch and a streamed response body); given the `ws` package it tries WebSocket first
and, behind a proxy that refuses upgrades, falls back to the same HTTP transport."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pubsocket
from tests.browser.test_client_js import make_app
from tests.centrifuge_js.harness import JS_DIR, require_sdk
from tests.ws_refusing_proxy import ws_refusing_proxy

LIB = Path(pubsocket.__file__).resolve().parent / "static" / "pubsocket.js"
SCRIPT = JS_DIR / "pubsocket_node.mjs"


async def run_node(node: str, url: str, token: str, *extra: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), str(LIB), url, token, *extra, cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_node_without_a_websocket_uses_http_stream(serve: Any) -> None:
    node = require_sdk()
    app = make_app()
    running = await serve(app)
    out = await run_node(node, running.ws + "/ws/chat", app.auth.issue(sub="alice"))
    assert out["transport"] == "http_stream"
    assert out["states"][0] == {"state": "connected", "transport": "http_stream",
                                "reconnected": False, "recovered": None}
    assert out["ack"] == {"offset": 1} and out["got"] == [["hello from node", 1]]


async def test_node_with_ws_falls_back_behind_a_refusing_proxy(serve: Any) -> None:
    node = require_sdk()
    app = make_app()
    running = await serve(app)
    token = app.auth.issue(sub="alice")
    direct = await run_node(node, running.ws + "/ws/chat", token, "ws")
    assert direct["transport"] == "websocket" and direct["got"] == [["hello from node", 1]]
    async with ws_refusing_proxy(running.port) as proxy:
        out = await run_node(node, f"ws://127.0.0.1:{proxy.port}/ws/chat", token, "ws")
    assert proxy.refused == 1
    assert out["states"][0]["fallback"] is True and out["states"][0]["code"] == 1006
    assert out["states"][1]["state"] == "connected"
    assert out["transport"] == "http_stream" and out["got"] == [["hello from node", 2]]
