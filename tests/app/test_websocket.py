"""The handler-facing WebSocket API: receive/send/close, lifecycle close codes, refusals.

Every test runs on both transports (`serve_any`: the native server and uvicorn +
`ASGIApp`), because this is the documented behaviour a handler may rely on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, ConnectionClosed, Websocket, secured
from tests.conftest import API_KEY, make_settings

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def ws_app(**changes: Any) -> tuple[App, dict[str, Any]]:
    app = App(make_settings(**changes))
    seen: dict[str, Any] = {}

    @app.get("/ws/types")
    async def types(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        for _ in range(2):
            message = await ws.receive()
            await ws.send(type(message).__name__)
            await ws.send(message)

    @app.get("/ws/return")
    async def returns(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        await ws.send("bye")

    @app.get("/ws/raise")
    async def raises(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        await ws.receive()
        raise RuntimeError("secret internals")

    @app.get("/ws/peer-leaves")
    async def peer_leaves(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        try:
            while True:
                await ws.receive()
        except ConnectionClosed as exc:
            seen["code"] = exc.code
            await ws.close()  # safe after the peer left
            await ws.close()  # and idempotent
            with pytest.raises(ConnectionClosed):
                await ws.send("too late")
            seen["done"] = True

    @app.get("/ws/close")
    async def closes(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        await ws.close(4321, "custom")

    @app.get("/ws/secure")
    @secured()
    async def secure(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        await ws.send(str(request.claims["sub"]))

    @app.get("/ws/iter")
    async def iterate(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        count = 0
        async for message in ws:
            count += 1
            if message == "end":
                await ws.send(str(count))

    return app, seen


async def test_receive_returns_str_for_text_and_bytes_for_binary(serve_any: Any) -> None:
    srv = await serve_any(ws_app()[0])
    async with connect(f"{srv.ws}/ws/types") as ws:
        await ws.send("hé")
        assert [await ws.recv(), await ws.recv()] == ["str", "hé"]
        await ws.send(b"\x00\xff")
        assert [await ws.recv(), await ws.recv()] == ["bytes", b"\x00\xff"]


async def test_handler_return_closes_with_1000(serve_any: Any) -> None:
    srv = await serve_any(ws_app()[0])
    async with connect(f"{srv.ws}/ws/return") as ws:
        assert await ws.recv() == "bye"
        with pytest.raises(websockets.ConnectionClosedOK):
            await ws.recv()
    assert ws.close_code == 1000


async def test_handler_exception_closes_with_1011_without_its_text(
        serve_any: Any, caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve_any(ws_app()[0])
    async with connect(f"{srv.ws}/ws/raise") as ws:
        await ws.send("go")
        with pytest.raises(websockets.ConnectionClosedError):
            await ws.recv()
    assert ws.close_code == 1011
    assert "secret" not in (ws.close_reason or "")
    assert "secret internals" in caplog.text


async def test_receive_raises_connection_closed_when_peer_leaves(serve_any: Any) -> None:
    app, seen = ws_app()
    srv = await serve_any(app)
    async with connect(f"{srv.ws}/ws/peer-leaves") as ws:
        await ws.send("hi")
    for _ in range(50):
        if seen.get("done"):
            break
        await asyncio.sleep(0.02)
    assert seen == {"code": 1000, "done": True}


async def test_close_with_custom_code(serve_any: Any) -> None:
    srv = await serve_any(ws_app()[0])
    async with connect(f"{srv.ws}/ws/close") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert (ws.close_code, ws.close_reason) == (4321, "custom")


async def test_async_iteration_ends_cleanly(serve_any: Any) -> None:
    srv = await serve_any(ws_app()[0])
    async with connect(f"{srv.ws}/ws/iter") as ws:
        for text in ("a", "b", "end"):
            await ws.send(text)
        assert await ws.recv() == "3"


async def test_secured_websocket_refuses_before_upgrade(serve_any: Any) -> None:
    srv = await serve_any(ws_app()[0])
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(f"{srv.ws}/ws/secure"):
            pass
    refusal = info.value.response
    assert refusal.status_code == 401
    assert refusal.headers["WWW-Authenticate"] == "Bearer"
    assert refusal.headers["Content-Type"] == "application/json"
    assert json.loads(refusal.body) == {"error": "unauthorized",
                                        "message": "a valid Bearer token is required"}
    async with connect(f"{srv.ws}/ws/secure", additional_headers=AUTH) as ws:
        assert await ws.recv() == "api_key"


async def test_origin_allow_list(serve_any: Any) -> None:
    srv = await serve_any(ws_app(allowed_origins=("https://good.example",))[0])
    async with connect(f"{srv.ws}/ws/return", origin="https://good.example") as ws:
        assert await ws.recv() == "bye"
    async with connect(f"{srv.ws}/ws/return") as ws:  # no Origin: a non-browser client
        assert await ws.recv() == "bye"
    for origin in ("https://evil.example", "null"):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(f"{srv.ws}/ws/return", origin=origin):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        assert json.loads(info.value.response.body)["error"] == "origin_not_allowed"


async def test_connection_cap_answers_503_before_upgrade(serve_any: Any) -> None:
    srv = await serve_any(ws_app(max_connections=2)[0])
    async with connect(f"{srv.ws}/ws/iter"), connect(f"{srv.ws}/ws/iter"):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(f"{srv.ws}/ws/iter"):
                pass
        assert info.value.response.status_code == 503
        assert json.loads(info.value.response.body)["error"] == "server_full"
    await asyncio.sleep(0.1)
    async with connect(f"{srv.ws}/ws/iter") as ws:  # room again once they left
        await ws.send("end")
        assert await ws.recv() == "1"


async def test_shutdown_closes_every_websocket_and_handlers_finish(serve_any: Any) -> None:
    app, seen = ws_app()
    srv = await serve_any(app)
    clients = [await connect(f"{srv.ws}/ws/iter") for _ in range(3)]
    blocked = await connect(f"{srv.ws}/ws/peer-leaves")  # a handler waiting in receive()
    await blocked.send("hi")
    await asyncio.sleep(0.05)
    # The server stops although handlers were running: well inside uvicorn's 5 s grace
    # period, after which it would cancel them (and hide a handler that never finishes).
    async with asyncio.timeout(3):
        await srv.server.shutdown()
    # The native server says "going away"; uvicorn sends its own 1012 (service restart).
    expected = 1001 if srv.kind == "native" else 1012
    for ws in [*clients, blocked]:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)
        assert ws.close_code == expected
        await ws.close()
    assert seen == {"code": expected, "done": True}
