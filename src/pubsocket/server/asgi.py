"""Run a pubsocket `App` under any ASGI server: ``uvicorn mymodule:asgi``, where
``asgi = ASGIApp(app)``, or a project folder in one command:
``PUBSOCKET_APP=myapp uvicorn --factory pubsocket.asgi:from_env``.

This is the compatibility path. The native server is the fast one: ASGI costs 2.6-4x per
delivery (docs/design.md), and here the hub's non-blocking `deliver` must hand frames to
a writer task, bounded by the same outbound budget (4008 when exceeded).

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
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..auth import Authenticator
from ..config import Settings
from ..errors import CloseCode, ConnectionClosed, HTTPError
from ..hub.wire import RAW, WireSet
from ..web.app import App
from ..web.project import env_files_for, load_app
from ..web.request import Headers, Request
from ..web.response import BODILESS, Response, error_response
from ..web.streaming import StreamResponse
from ..web.websocket import Listener, MessageIterator, translate_close
from .asgi_paths import Scope, app_target

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("pubsocket.asgi")


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
            upgrader = _ASGIUpgrader(self, receive, send, tuple(scope.get("subprotocols", ())))
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


class _ASGIUpgrader:
    def __init__(self, owner: ASGIApp, receive: Receive, send: Send,
                 offered: tuple[str, ...]) -> None:
        self._owner = owner
        self._offered = offered
        self._receive = receive
        self._send = send
        self._accepted: ASGIConnection | None = None

    @property
    def accepted(self) -> ASGIConnection | None:
        return self._accepted

    @property
    def open_connections(self) -> int:
        return self._owner.open_connections

    async def accept(self, subprotocols: Sequence[str] = (), max_message_size: int | None = None,
                     max_fragments: int | None = None) -> ASGIConnection:
        if self._accepted is not None:
            return self._accepted
        connect = await self._receive()
        if connect["type"] != "websocket.connect":
            raise HTTPError(400, "bad_handshake", "invalid WebSocket handshake")
        chosen = next((s for s in subprotocols if s in self._offered), None)
        await self._send({"type": "websocket.accept", "subprotocol": chosen})
        self._owner.open_connections += 1
        limit = (self._owner.app.settings.max_message_size if max_message_size is None
                 else max_message_size)
        self._accepted = ASGIConnection(self._owner, self._receive, self._send, chosen, limit)
        return self._accepted


class ASGIConnection(MessageIterator):
    """`pubsocket.web.Connection` over ASGI messages, with a bounded writer task."""

    # The ASGI server frames (and compresses) what it sends: the hub hands this
    # connection payloads, unframed, and it sends each one as a text message.
    wires = RAW

    def __init__(self, owner: ASGIApp, receive: Receive, send: Send,
                 subprotocol: str | None, max_message_size: int = 0) -> None:
        self.subprotocol = subprotocol
        self.close_codes: Mapping[int, tuple[int, str]] | None = None
        self._max_size = max_message_size  # 0 = unlimited
        self._binary = False  # deliveries go out as binary messages (`binary_wires`)
        self._owner = owner
        self._receive = receive
        self._send = send
        self._closed = False
        self._counted_out = False
        self._gone: ConnectionClosed | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._queued = 0
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop())
        self._reader: asyncio.Task[None] | None = None
        self._readable = asyncio.Event()
        self._readable.set()
        self._done = loop.create_future()

    @property
    def attached(self) -> bool:
        return self._reader is not None

    def attach(self, listener: Listener) -> None:
        """Push mode over ASGI: a reader task feeds `listener` (ASGI has no callbacks)."""
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(listener))

    def binary_wires(self) -> WireSet:
        """The wires of a binary protocol: payloads, sent from now on as binary messages."""
        self._binary = True
        return RAW

    def set_max_message_size(self, size: int) -> None:
        """Close 1009 on messages over `size` from now on (0: no limit). The ASGI server
        has buffered each message whole before we see it (uvicorn: up to its
        ``--ws-max-size``, 16 MiB by default), so set that no larger than needed."""
        self._max_size = size

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    async def wait_closed(self) -> None:
        """Return once the connection is over (the ASGI app must not return before)."""
        await asyncio.shield(self._done)

    async def _read_loop(self, listener: Listener) -> None:
        try:
            while True:
                await self._readable.wait()
                try:
                    message = await self.receive()
                except ConnectionClosed:
                    return
                try:
                    listener.on_message(message)
                except Exception:
                    log.exception("a WebSocket listener failed")
                    await self.close(CloseCode.INTERNAL_ERROR, "internal error")
                    return
        finally:
            listener.on_close()
            self._finish()

    @property
    def closed(self) -> bool:
        return self._closed

    async def receive(self) -> str | bytes:
        if self._gone is not None:
            raise self._gone
        if self._closed:  # we closed it: the peer's answer is not waited for
            raise ConnectionClosed(CloseCode.NORMAL, "closing")
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            # The peer left or the server is shutting down: end the connection here, so
            # the handler's close() and the app's wait_closed() both return.
            self._gone = ConnectionClosed(message.get("code", 1005), message.get("reason") or "")
            self._finish()
            raise self._gone
        text = message.get("text")
        data: str | bytes = text if text is not None else message.get("bytes") or b""
        if self._max_size and _size(data) > self._max_size:
            # The server's own limit (uvicorn --ws-max-size) may be larger than ours.
            await self.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            raise ConnectionClosed(CloseCode.MESSAGE_TOO_BIG, "message too big")
        return data

    async def send(self, message: str | bytes) -> None:
        if self._closed:
            raise self._gone or ConnectionClosed(CloseCode.NORMAL, "closing")
        key = "text" if isinstance(message, str) else "bytes"
        try:
            await self._send({"type": "websocket.send", key: message})
        except (OSError, RuntimeError):  # what ASGI servers raise once the peer left
            self._gone = ConnectionClosed(1006, "connection lost")
            self._finish()
            raise self._gone from None

    @property
    def backlog(self) -> int:
        """Bytes queued for the writer task that it has not handed to the server yet."""
        return self._queued

    def deliver(self, frame: bytes) -> None:
        if self._closed:
            return
        budget = self._owner.app.settings.outbound_budget
        if budget and self._queued + len(frame) > budget:
            self.close_nowait(CloseCode.SLOW_CONSUMER, "slow consumer")
            return
        self._queued += len(frame)
        self._queue.put_nowait(frame)

    def close_nowait(self, code: int, reason: str = "") -> None:
        if not self._closed:
            asyncio.get_running_loop().create_task(self.close(code, reason))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        if self._gone is None:
            code, reason = translate_close(self.close_codes, code, reason)
            with contextlib.suppress(Exception):  # the peer may be gone already
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        self._finish()

    def _finish(self) -> None:
        """The connection is over: stop the writer, count it out, release wait_closed()."""
        # Counted out exactly once: `_finish` runs from receive(), close() and the reader's
        # exit, often in one tick, and a cancelled writer is not `done()` until it runs.
        if not self._counted_out:
            self._counted_out = True
            self._owner.open_connections -= 1
        self._writer.cancel()
        self._closed = True
        if not self._done.done():
            self._done.set_result(None)

    async def _write_loop(self) -> None:
        while True:
            payload = await self._queue.get()
            self._queued -= len(payload)
            try:
                await self._send({"type": "websocket.send", "bytes": payload} if self._binary
                                 else {"type": "websocket.send", "text": payload.decode()})
            except (OSError, RuntimeError):  # what ASGI servers raise once the peer left
                log.debug("ASGI send failed; the connection is gone")
                return


def _size(message: str | bytes) -> int:
    """The message's size on the wire (UTF-8 bytes for text), as the native limit counts."""
    if isinstance(message, bytes) or message.isascii():
        return len(message)
    return len(message.encode())
