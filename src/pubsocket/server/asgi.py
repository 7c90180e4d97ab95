"""Run a pubsocket `App` under any ASGI server: ``uvicorn mymodule:asgi``, where
``asgi = ASGIApp(app)``, or a project folder in one command:
``PUBSOCKET_APP=myapp uvicorn --factory pubsocket.asgi:from_env``.

This is the compatibility path. The native server is the fast one: ASGI costs 2.6-4x per
delivery (docs/design.md), and here the hub's non-blocking `deliver` must hand frames to
a writer task, bounded by the same outbound budget (4008 when exceeded): the WebSocket
side is server/asgi_websocket.py.

It answers as the native server does (docs/protocol.md): refusals before the upgrade
are HTTP responses with the JSON error body when the server offers the
``websocket.http.response`` extension (uvicorn does); a message over the size limit
closes with 1009 (uvicorn's ``--ws-max-size`` refuses it before buffering, the adapter
checks every message it is handed); when the peer leaves or the server shuts down,
`receive()` raises `ConnectionClosed` and `wait_closed()` returns, so handlers finish.

Bounds (issue 15): what the app applies holds here too (per-client 429s, the failed-auth
budget, `/metrics` access, security headers) and the adapter counts the request body
against `max_body_size` as it arrives; the request head limits and the HTTP write side
(timeouts, unread responses) belong to the ASGI server (docs/security.md "HTTP").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..auth import Authenticator
from ..config import Settings
from ..errors import CloseCode, HTTPError
from ..web.app import App
from ..web.project import env_files_for, load_app
from ..web.request import Headers, Request
from ..web.response import BODILESS, Response, error_response
from ..web.streaming import StreamResponse
from .asgi_paths import Scope, app_target
from .asgi_websocket import ASGIUpgrader, Receive, Send


class ASGIApp:
    """An ASGI 3 application wrapping `app` (http, websocket and lifespan scopes).

    Mountable under a prefix (``app.mount("/rt", asgi)``, ``uvicorn --root-path``):
    routes match the path below the scope's ``root_path`` (`app_target`), and the mount
    point itself redirects to its slash form. `lifespan` starts and stops the app for
    hosts that do not forward lifespan events to mounted apps; `auth` mints tokens.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.open_connections = 0
        self._starting: asyncio.Task[None] | None = None
        self._started = False
        app.open_connections = lambda: self.open_connections

    @property
    def auth(self) -> Authenticator:
        """The app's token helper: ``asgi.auth.issue(sub=..., ttl=..., claims=...)`` in a
        host app's login view (auth/tokens.py)."""
        return self.app.auth

    @contextlib.asynccontextmanager
    async def lifespan(self, host: object = None) -> AsyncIterator[None]:
        """A Starlette-style lifespan: entering starts the app (hub, broker, startup
        hooks), leaving shuts it down. For hosts that do not forward lifespan events to
        mounted apps: ``FastAPI(lifespan=asgi.lifespan)``, or inside the host's own
        lifespan ``async with asgi.lifespan(app): yield``. `host` (the host app Starlette
        passes) is not used."""
        await self._start()
        try:
            yield
        finally:
            await self._stop()

    async def _start(self) -> None:
        """Start the app once, however many callers (lifespan, first requests) race here."""
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self.app.startup())
        await asyncio.shield(self._starting)
        self._started = True

    async def _stop(self) -> None:
        if self._starting is not None:
            self._starting = None
            self._started = False
            await self.app.shutdown()

    @classmethod
    def from_folder(cls, app_dir: str | Path, settings: Settings | None = None) -> ASGIApp:
        """The ASGI app for project folder `app_dir`; settings default to
        `Settings.from_env` over ``app_dir/.env`` then ``./.env``."""
        if settings is None:
            settings = Settings.from_env(env_files=env_files_for(app_dir))
        app = load_app(app_dir, settings)
        app.check()  # fail at import, as `pubsocket serve` does, not at the first request
        return cls(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if not self._started:  # no lifespan reached us (a mount without `self.lifespan`)
            await self._start()
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        target = app_target(scope)
        client = tuple(scope["client"]) if scope.get("client") else None
        root_path = scope.get("root_path") or ""
        if kind == "http" and root_path.rstrip("/") and scope["path"] == root_path.rstrip("/"):
            # ``/rt`` -> ``/rt/``: the pages' relative URLs resolve below the mount only
            # from a URL ending in a slash (Starlette's Mount redirects the same way).
            query = scope.get("query_string") or b""
            location = quote(scope["path"]) + "/" + ("?" + query.decode("latin-1") if query else "")
            await _send_response(send, Response(status=308, body=b"", content_type="text/plain",
                                                headers=[("Location", location)]))
        elif kind == "http":
            await self._http(scope, receive, send, headers, target, client, root_path)
        elif kind == "websocket":
            upgrader = ASGIUpgrader(self, receive, send, tuple(scope.get("subprotocols", ())))
            request = Request("GET", target, headers, b"", upgrader=upgrader, client=client)
            request.root_path = root_path
            response = await self.app.handle(request)
            if response is not None and upgrader.accepted is None:
                await _refuse(scope, send, response)
            elif upgrader.accepted is not None:
                await upgrader.accepted.wait_closed()  # ASGI: the app lives as long as it

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send, headers: Headers,
                    target: str, client: Any, root_path: str) -> None:
        limit = self.app.settings.max_body_size
        chunks: list[bytes] = []
        size = 0
        response: Response | None = None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit and size > limit:
                # The rest of the body is never read, so the connection cannot be reused.
                response = error_response(HTTPError(413, "body_too_large",
                                                    "request body too large"),
                                          {"Connection": "close"})
                break
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        if response is None:
            request = Request(scope["method"], target, headers, b"".join(chunks), client=client)
            request.root_path = root_path
            response = await self.app.handle(request)
        assert response is not None
        if isinstance(response, StreamResponse):  # streams are the native server's
            response = error_response(HTTPError(501, "not_implemented",
                                                "streaming needs the native server"))
        await _send_response(send, response)


async def _send_response(send: Send, response: Response) -> None:
    await send({"type": "http.response.start", "status": response.status,
                "headers": _raw_headers(response)})
    await send({"type": "http.response.body",
                "body": b"" if response.status in BODILESS else response.body})


def _raw_headers(response: Response) -> list[tuple[bytes, bytes]]:
    raw = [] if response.status in BODILESS else [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in response.headers]
    return raw


async def _refuse(scope: Scope, send: Send, response: Response) -> None:
    """Answer a refused upgrade with `response` itself (status + JSON body) when the
    server supports the ``websocket.http.response`` extension, else with a close (which
    servers turn into a bare 403)."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": response.status,
                    "headers": _raw_headers(response)})
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})


def from_env() -> ASGIApp:
    """Factory for ``uvicorn --factory pubsocket.asgi:from_env``: serves the project
    folder named by ``PUBSOCKET_APP`` (default: the current directory)."""
    app_dir = Settings.from_env(env_files=env_files_for(".")).app_dir
    return ASGIApp.from_folder(app_dir)
