"""Liveness and readiness probes, and the drain on SIGTERM: readiness answers 503
first, the connections stay up for the drain delay, then close with 1001 and the
Python client reconnects (with jittered backoff) to whoever answers next."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pubsocket.client
from pubsocket import App, Server, pubsub
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, free_port, make_settings
from tests.redis_server import RedisProcess


async def probe(base: str, path: str) -> tuple[int, Any]:
    status, headers, body = await ahttp("GET", base + path)
    assert {k.lower(): v for k, v in headers.items()}.get("cache-control") == "no-store"
    return status, json.loads(body)


async def test_probes_answer_at_their_settable_paths(serve_any: Any) -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app)
    srv = await serve_any(app)
    assert await probe(srv.http, "/healthz") == (200, {"status": "ok"})
    assert await probe(srv.http, "/readyz") == (200, {"status": "ready"})

    moved = App(make_settings(health_path="/live", ready_path=""))

    @moved.get("/healthz")  # an app's own route always wins over a probe
    async def mine(request: Any, response: Any) -> Any:
        return response({"mine": True})

    srv = await serve_any(moved)
    assert await probe(srv.http, "/live") == (200, {"status": "ok"})
    status, _, body = await ahttp("GET", f"{srv.http}/healthz")
    assert (status, json.loads(body)) == (200, {"mine": True})
    status, _, _ = await ahttp("GET", f"{srv.http}/readyz")
    assert status == 404


async def test_readiness_follows_the_broker(serve: Any) -> None:
    port = free_port()
    redis = RedisProcess(port).start()
    try:
        app = App(make_settings(broker=f"redis://127.0.0.1:{port}/0"))
        pubsub("/ws/chat", app=app)
        srv = await serve(app)
        assert await probe(srv.http, "/readyz") == (200, {"status": "ready"})
        redis.kill()
        async with asyncio.timeout(10):
            while (await probe(srv.http, "/readyz"))[0] == 200:
                await asyncio.sleep(0.05)
        assert await probe(srv.http, "/readyz") == (503, {"status": "broker_unavailable"})
        assert await probe(srv.http, "/healthz") == (200, {"status": "ok"})  # still alive
    finally:
        redis.kill()


async def test_sigterm_drains_readiness_first_then_closes_with_1001() -> None:
    app = App(make_settings(drain_delay=1.0))
    pubsub("/ws/chat", app=app)
    server = Server(app, "127.0.0.1", 0)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    client = pubsocket.client.connect(f"ws://127.0.0.1:{server.port}/ws/chat", token=API_KEY)
    await client.start()
    try:
        sub = await client.subscribe("room:drain")
        stopping = asyncio.create_task(server.shutdown())
        started = time.monotonic()
        async with asyncio.timeout(5):
            while (await probe(base, "/readyz"))[0] == 200:
                await asyncio.sleep(0.02)
        assert await probe(base, "/readyz") == (503, {"status": "draining"})
        # While draining everything still works: this node's clients are served.
        await app.hub.publish("room:drain", {"n": 1})
        async with asyncio.timeout(2):
            event = await anext(aiter(sub))
        assert isinstance(event, pubsocket.client.Message) and event.data == {"n": 1}
        assert client.state == "connected"
        await stopping
        assert time.monotonic() - started >= 0.9  # the drain delay was honoured
        async with asyncio.timeout(5):
            while client.state == "connected":
                await asyncio.sleep(0.02)
        assert client.state in ("reconnecting", "connecting")  # 1001: it will retry
    finally:
        await client.close()


async def test_shutdown_closes_idle_keep_alive_connections_and_ends_busy_ones() -> None:
    # An idle keep-alive connection used to stay open after shutdown until its own
    # timer (handshake_timeout, 10 s) or the process's exit; a request in flight is
    # still answered, with Connection: close, and then the connection ends.
    app = App(make_settings(handshake_timeout=30.0))
    release = asyncio.Event()

    @app.get("/slow")
    async def slow(request: Any, response: Any) -> Any:
        await release.wait()
        return response({"done": True})

    server = Server(app, "127.0.0.1", 0)
    await server.start()
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    idle_reader, idle = await asyncio.open_connection("127.0.0.1", server.port)
    busy_reader, busy = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        idle.write(request)
        async with asyncio.timeout(5):
            head = await idle_reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"close" not in head.lower()
        busy.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            while not server.state or not server.state.tasks:  # the handler is running
                await asyncio.sleep(0.01)
        stopping = asyncio.create_task(server.shutdown())
        async with asyncio.timeout(5):
            await idle_reader.readuntil(b"}")  # the rest of the health body
            assert await idle_reader.read() == b""  # closed by the shutdown, not a timer
        release.set()
        async with asyncio.timeout(5):
            answer = await busy_reader.read()  # the whole answer, then the close
        assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
        assert answer.endswith(b'{"done":true}') or answer.endswith(b'{"done": true}')
        await stopping
    finally:
        release.set()
        idle.close()
        busy.close()
        await server.shutdown()
