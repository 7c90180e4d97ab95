"""The same app under uvicorn through the ASGI adapter."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, ASGIApp, pubsub
from tests.conftest import API_KEY, free_port, make_settings


async def test_app_runs_under_uvicorn() -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True)

    @app.get("/hello/{name}")
    async def hello(request: Any, response: Any) -> Any:
        return response({"hello": request.params["name"]})

    port = free_port()
    config = uvicorn.Config(ASGIApp(app), host="127.0.0.1", port=port, lifespan="on",
                            log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)

        def get() -> Any:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/asgi", timeout=5) as r:
                return json.loads(r.read())

        assert await asyncio.to_thread(get) == {"hello": "asgi"}
        url = f"ws://127.0.0.1:{port}/ws/chat"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with connect(url, additional_headers=headers) as a, \
                connect(url, additional_headers=headers, subprotocols=["pubsocket.v1"]) as b:  # type: ignore[list-item]
            await a.send(json.dumps({"action": "subscribe", "topic": "room"}))
            await b.send(json.dumps({"action": "subscribe", "topic": "room", "id": 1}))
            ack = json.loads(await b.recv())
            assert (ack["type"], ack["id"], ack["topic"], ack["offset"]) == ("ack", 1, "room", 0)
            await b.send(json.dumps({"action": "publish", "topic": "room", "data": {"x": 1}}))
            assert json.loads(await asyncio.wait_for(a.recv(), 5)) == {"x": 1}
            assert json.loads(await asyncio.wait_for(b.recv(), 5)) == {
                "type": "message", "topic": "room", "offset": 1, "data": {"x": 1}}
        with pytest.raises(websockets.InvalidStatus):
            async with connect(url):
                pass
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
