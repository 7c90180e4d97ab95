"""`ASGIApp` mounted under a prefix in a host app, under real uvicorn in this loop:
every route below the prefix, the host's lifespan reaching pubsocket through
`asgi.lifespan`, and the connection gauge after clients leave (it went negative).

The subprocess tests with the runnable examples are test_fastapi.py and test_django.py.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect

from pubsocket import App, ASGIApp, admin, pubsub
from pubsocket.server.asgi_paths import app_target
from tests.conftest import API_KEY, make_settings

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@asynccontextmanager
async def uvicorn_serving(asgi: Any, **config: Any) -> AsyncIterator[int]:
    """Serve `asgi` on port 0 until the block ends (bounded start and stop)."""
    server = uvicorn.Server(uvicorn.Config(
        asgi, host="127.0.0.1", port=0, lifespan="on", log_level="warning",
        ws="websockets-sansio", timeout_graceful_shutdown=5, **config))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def rt_app() -> tuple[App, list[str]]:
    """The pubsocket app to mount: hub, admin, a route with a parameter, and hooks that
    record the lifecycle."""
    app = App(make_settings())
    events: list[str] = []
    pubsub("/ws/chat", app=app, secured=True)
    admin("/admin", app=app)

    @app.get("/hello/{name}")
    async def hello(request: Any, response: Any) -> Any:
        return response({"hello": request.params["name"], "root": request.root_path})

    @app.on_startup
    async def started() -> None:
        events.append("startup")

    @app.on_shutdown
    async def stopped() -> None:
        events.append("shutdown")

    return app, events


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def aget(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    return await asyncio.to_thread(get, url, headers)


async def check_routes_under(base: str) -> None:
    """Every kind of route answers below `base` (``http://host:port/rt``), and knows
    it is mounted at /rt."""
    status, body = await aget(f"{base}/hello/caf%C3%A9")
    assert status == 200 and json.loads(body) == {"hello": "café", "root": "/rt"}
    status, body = await aget(f"{base}/pubsocket.js")
    assert status == 200 and b"export function connect" in body
    status, page = await aget(f"{base}/admin")
    assert status == 200
    assert b'src="/rt/admin/admin.js"' in page and b'data-root="/rt"' in page
    assert (await aget(f"{base}/admin/admin.js"))[0] == 200
    status, body = await aget(f"{base}/admin/stats", AUTH)
    assert status == 200 and json.loads(body)["connections"] == 0
    assert (await aget(f"{base}/nothing-here"))[0] == 404
    ws_base = base.replace("http://", "ws://")
    async with connect(f"{ws_base}/ws/chat", additional_headers=AUTH) as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": "t"}))
        await ws.send(json.dumps({"action": "publish", "topic": "t", "data": 1}))
        assert await asyncio.wait_for(ws.recv(), 5) == "1"


async def test_mounted_in_starlette_with_the_hosts_lifespan() -> None:
    app, events = rt_app()
    asgi = ASGIApp(app)

    @asynccontextmanager
    async def host_lifespan(host: Starlette) -> AsyncIterator[None]:
        events.append("host up")
        async with asgi.lifespan(host):
            yield
        events.append("host down")

    host = Starlette(routes=[Mount("/rt", app=asgi)], lifespan=host_lifespan)
    async with uvicorn_serving(host) as port:
        # Started by the lifespan, before any request reached the mount.
        assert events == ["host up", "startup"]
        await check_routes_under(f"http://127.0.0.1:{port}/rt")
        # The host's own paths are not ours.
        assert (await aget(f"http://127.0.0.1:{port}/hello/x"))[0] == 404
    assert events == ["host up", "startup", "shutdown", "host down"]


async def test_uvicorn_root_path_serves_the_app_below_it() -> None:
    # `uvicorn --root-path /rt` behind a proxy that strips /rt: uvicorn puts it back in
    # front of the path and sets root_path (the ASGI spec's convention), and the pages
    # must name their assets by the public path, /rt/...
    app, _ = rt_app()
    async with uvicorn_serving(ASGIApp(app), root_path="/rt") as port:
        await check_routes_under(f"http://127.0.0.1:{port}")


async def test_a_hand_written_router_like_djangos_asgi_py() -> None:
    # examples/django/chatsite/asgi.py's shape: lifespan events and /rt/... go to
    # pubsocket with root_path set, everything else elsewhere.
    app, events = rt_app()
    rt = ASGIApp(app)

    async def elsewhere(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"the host"})

    async def router(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await rt(scope, receive, send)
        elif scope["path"] == "/rt" or scope["path"].startswith("/rt/"):
            await rt({**scope, "root_path": "/rt"}, receive, send)
        else:
            await elsewhere(scope, receive, send)

    async with uvicorn_serving(router) as port:
        assert events == ["startup"]  # the ASGI lifespan protocol, through the router
        base = f"http://127.0.0.1:{port}"
        await check_routes_under(base + "/rt")
        assert await aget(base + "/hello/x") == (200, b"the host")

        def no_redirect(url: str) -> tuple[int, str | None]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", url)
                reply = conn.getresponse()
                return reply.status, reply.getheader("Location")
            finally:
                conn.close()

        # The mount point itself redirects to its slash form, where relative URLs work.
        assert await asyncio.to_thread(no_redirect, "/rt?a=1") == (308, "/rt/?a=1")
    assert events == ["startup", "shutdown"]


async def test_connections_are_counted_out_once_when_clients_leave() -> None:
    app, _ = rt_app()
    async with uvicorn_serving(ASGIApp(app)) as port:
        url = f"ws://127.0.0.1:{port}/ws/chat"
        stats = f"http://127.0.0.1:{port}/admin/stats"
        gone = await connect(url, additional_headers=AUTH, subprotocols=["pubsocket.v1"])  # type: ignore[list-item]
        closing = await connect(url, additional_headers=AUTH)
        staying = await connect(url, additional_headers=AUTH)
        assert json.loads((await aget(stats, AUTH))[1])["connections"] == 3
        assert gone.transport is not None
        gone.transport.abort()  # a tab closed without a close frame
        await closing.close(1001)  # a browser navigating away
        async with asyncio.timeout(5):
            while json.loads((await aget(stats, AUTH))[1])["connections"] != 1:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # nothing counts it down twice afterwards
        assert json.loads((await aget(stats, AUTH))[1])["connections"] == 1
        await staying.close()


def test_app_target_strips_the_root_path() -> None:
    def target(path: str, root: str, raw: bytes | None = None, query: bytes = b"") -> str:
        scope: dict[str, Any] = {"path": path, "root_path": root, "query_string": query}
        if raw is not None:
            scope["raw_path"] = raw
        return app_target(scope)

    assert target("/rt/a/b", "/rt", b"/rt/a%2Fb") == "/a%2Fb"
    assert target("/rt", "/rt", b"/rt") == "/"
    assert target("/rt/x", "/rt/", b"/rt/x", b"q=1") == "/x?q=1"
    assert target("/a", "", b"/a") == "/a"
    assert target("/caf\u00e9", "") == "/caf%C3%A9"  # no raw_path: the path, encoded
    # A server that already stripped the prefix from path: taken whole.
    assert target("/x", "/rt", b"/x") == "/x"
    # A prefix that is only a string prefix of the segment is not a mount.
    assert target("/rtx/y", "/rt", b"/rtx/y") == "/rtx/y"
    # A prefix needing percent-encoding, and a raw_path missing.
    assert target("/my app/é", "/my app") == "/%C3%A9"
