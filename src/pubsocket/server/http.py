"""`HttpProtocol`: HTTP/1.1 on an asyncio transport, parsed by httptools.

Keep-alive and pipelining (requests are answered in order), Content-Length and chunked
bodies, and the limits: 431 past 8 KiB per header line, 16 KiB of request head or 100
headers; 414 past 8 KiB of URL; 413 past the body limit. The head is counted in the
bytes fed to the parser while it is incomplete, so a body that arrives in the same
segment as its head never counts against the head. The request head must arrive within
the handshake timeout. An upgrade request gets a `NativeUpgrader` (server/upgrade.py);
once the handler accepts, the transport is handed to a `WSConnection`.

Write side (issue 15): one response at a time per connection. After a response is
written, a connection holding more than `outbound_budget` unsent bytes serves nothing
else until it drains; if the unsent bytes do not shrink by 64 KiB within `write_timeout`
seconds the client is not reading (or reads a trickle) and the connection is aborted,
freeing the response. A close with
unsent bytes (``Connection: close``, a refusal, the idle timer) is an abort once
`write_timeout` passes, so a client that never reads never pins a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools

from ..errors import HTTPError
from ..log import refusals
from ..web.request import Headers, Request
from ..web.response import BODILESS, Response, error_response
from ..web.streaming import StreamResponse
from . import access
from .frames import FrameProtocol
from .sse import serve_stream
from .state import ServerState
from .upgrade import NativeUpgrader
from .websocket import WSConnection

log = logging.getLogger("pubsocket.server")

MAX_HEADER_LINE = 8 * 1024
MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_URL = 8 * 1024
MIN_PROGRESS = 64 * 1024  # bytes an unread response must shed per write timeout


class _Refuse(Exception):
    """Raised inside parser callbacks to answer `status` and close."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.error = HTTPError(status, code, message)


class HttpProtocol(asyncio.Protocol):
    """One TCP connection speaking HTTP/1.1 until it is upgraded or closed."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._parser: Any = httptools.HttpRequestParser(self)
        self._transport: Any = None
        self._client: tuple[str, int] | None = None
        self._queue: deque[tuple[Request, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._upgraded = False
        self._tail = b""  # bytes after an upgrade request, before the handshake completes
        self._drained: asyncio.Future[None] | None = None  # set while writing is paused
        self._abort_timer: asyncio.TimerHandle | None = None
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_head = True

    # -- asyncio.Protocol ----------------------------------------------------------------
    @property
    def state(self) -> ServerState:
        """The server state this connection belongs to."""
        return self._state

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        # The host string is interned: clients behind one address (a proxy, a NAT)
        # share it, and an idle WebSocket's session keeps it (for refusal logs).
        self._client = (sys.intern(peer[0]), peer[1]) if isinstance(peer, tuple) else None
        self._state.http[self] = None
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self._upgraded:
            self._tail += data  # early frames; handed to the WebSocket after the 101
            return
        try:
            while data:
                if self._in_head:  # feed the head by slices, to count only its bytes
                    room = MAX_HEAD + 1 - self._head_bytes
                    chunk, data = data[:room], data[room:]
                    self._head_bytes += len(chunk)
                else:
                    chunk, data = data, b""
                try:
                    self._parser.feed_data(chunk)
                except httptools.HttpParserUpgrade as exc:
                    self._upgraded = True
                    self._tail = chunk[exc.args[0]:] + data
                    self._transport.pause_reading()
                    return
                if self._in_head and self._head_bytes > MAX_HEAD:
                    self._refuse(HTTPError(431, "headers_too_large",
                                           "request headers too large"))
                    return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self._refuse(cause.error)
            else:
                log.exception("HTTP callback failed")
                self._refuse(HTTPError(500, "internal_error", "internal server error"))
        except httptools.HttpParserError:
            self._refuse(HTTPError(400, "bad_request", "malformed HTTP request"))

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self._state.loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.http.pop(self, None)
        self.resume_writing()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._upgraded:
            self._task.cancel()

    # -- httptools callbacks -----------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL:
            raise _Refuse(414, "uri_too_long", "request URL too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER_LINE:
            raise _Refuse(431, "header_too_large", "a header line is too large")
        if len(self._headers) >= MAX_HEADERS:
            raise _Refuse(431, "too_many_headers", "too many headers")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        limit = self._state.settings.max_body_size
        length = next((v for k, v in self._headers if k.lower() == "content-length"), None)
        if limit and length is not None and length.isdigit() and int(length) > limit:
            raise _Refuse(413, "body_too_large", "request body too large")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        limit = self._state.settings.max_body_size
        if limit and self._body_size > limit:
            raise _Refuse(413, "body_too_large", "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parser = self._parser
        upgrade = parser.should_upgrade()
        headers = Headers(self._headers)
        request = Request(
            method=parser.get_method().decode(),
            target=self._url.decode("latin-1"),
            headers=headers,
            body=b"".join(self._body),
            client=self._client,
        )
        if upgrade and headers.get("upgrade", "").lower() == "websocket":
            request.upgrader = NativeUpgrader(self, request)
        self._queue.append((request, parser.should_keep_alive() and not upgrade))
        self._reset_message()
        if self._task is None:
            self._task = self._state.loop.create_task(self._serve())
            self._state.tasks.add(self._task)
            self._task.add_done_callback(self._state.tasks.discard)
        if len(self._queue) > 8:
            self._transport.pause_reading()  # a pipelining client waits for answers

    # -- request processing --------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self._queue:
                request, keep_alive = self._queue.popleft()
                self._state.stats.http_requests += 1
                started = self._state.loop.time()
                response = await self._state.app.handle(request)
                if self._state.settings.access_log:
                    self._log_access(request, response, started)
                if response is None:  # upgraded: the WebSocket owns the transport now
                    # The request and its upgrader point at each other: without the
                    # cycle the handshake's objects are freed now, not by a collection.
                    request.upgrader = None
                    return
                if self._transport.is_closing():
                    return
                if isinstance(response, StreamResponse):
                    await self._stream(response)  # the stream owns the transport now
                    return
                if request.upgrader is not None or self._state.shutting_down:
                    keep_alive = False
                self._write_response(response, keep_alive)
                if not keep_alive:
                    self._close()
                    return
                if not await self._within_budget():
                    return
                self._transport.resume_reading()
            self._arm_timer()
        finally:
            self._task = None

    async def _stream(self, response: StreamResponse) -> None:
        """Hand the transport to an `SseStream` (server/sse.py); 503 when the
        connection cap is reached."""
        state = self._state
        cap = state.settings.max_connections
        if cap and len(state.websockets) + len(state.streams) >= cap:
            self._refuse(HTTPError(503, "server_full", "too many connections, retry later"))
            return
        self._upgraded = True
        self._parser = None
        state.http.pop(self, None)  # the stream's own registry has it now
        await serve_stream(self._transport, state, response, _reason(response.status))

    def _log_access(self, request: Request, response: Response | None,
                    started: float) -> None:
        if response is not None:  # upgrades log at the 101 and at the close instead
            access.request(request.method, request.path, response.status,
                           self._state.loop.time() - started, self._client)

    def _write_response(self, response: Response, keep_alive: bool) -> None:
        reason = _reason(response.status)
        bodiless = response.status in BODILESS
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        if not bodiless:
            lines += [f"content-type: {response.content_type}",
                      f"content-length: {len(response.body)}"]
        lines += [
            f"date: {formatdate(usegmt=True)}",
            "server: pubsocket",
            f"connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        lines += [f"{k}: {v}" for k, v in response.headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if bodiless or not response.body:
            self._transport.write(head)
        elif len(response.body) > 64 * 1024:  # large: no copy of the body into the head
            self._transport.writelines((head, response.body))
        else:
            self._transport.write(head + response.body)

    async def _within_budget(self) -> bool:
        """Wait until at most `outbound_budget` bytes are unsent; abort the connection
        (False) when less than `MIN_PROGRESS` of them leave in `write_timeout` seconds
        (a client that reads a byte now and then holds its response no longer)."""
        settings = self._state.settings
        budget, timeout = settings.outbound_budget, settings.write_timeout
        transport, loop = self._transport, self._state.loop
        size = transport.get_write_buffer_size()
        if not budget or size <= budget:
            return True
        transport.pause_reading()  # nothing more is parsed or queued meanwhile
        mark, deadline = size, loop.time() + timeout
        while size > budget:
            # Woken by resume_writing, or polled when the budget is under the
            # transport's high-water mark (writing is then never paused).
            wait = max(0.0, min(deadline - loop.time(), 0.25)) if timeout else 0.25
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drained)
                                       if self._drained is not None
                                       else asyncio.sleep(wait), wait)
            if transport.is_closing():
                return False
            size = transport.get_write_buffer_size()
            if size <= mark - MIN_PROGRESS:
                mark, deadline = size, loop.time() + timeout
            elif timeout and loop.time() >= deadline and size > budget:
                self._state.stats.http_write_timeouts += 1
                refusals.warn("http_write_timeout", self._peer())
                transport.abort()
                return False
        return True

    def _close(self) -> None:
        """Close after the unsent bytes; abort if they are still unsent after
        `write_timeout` (asyncio's close would otherwise wait for them forever)."""
        transport = self._transport
        transport.close()
        timeout = self._state.settings.write_timeout
        if timeout and transport.get_write_buffer_size() and self._abort_timer is None:
            self._abort_timer = self._state.loop.call_later(timeout, transport.abort)

    def _peer(self) -> str:
        return f"{self._client[0]}:{self._client[1]}" if self._client else "?"

    def _refuse(self, error: HTTPError) -> None:
        if self._transport.is_closing():
            return
        self._write_response(error_response(error), keep_alive=False)
        self._close()

    def _arm_timer(self) -> None:
        timeout = self._state.settings.handshake_timeout
        if timeout and self._timer is None:
            self._timer = self._state.loop.call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        if self._task is None and not self._upgraded:
            self._close()

    def close_if_idle(self) -> None:
        """At shutdown: close now if the connection is between requests (nothing
        queued, running or half received). A busy one is answered with
        ``Connection: close`` (`ServerState.shutting_down`) and closes after that."""
        if (self._task is None and not self._upgraded and not self._queue
                and self._in_head and self._head_bytes == 0):
            self._close()

    # -- upgrade -------------------------------------------------------------------------
    def switch_to_websocket(self, head: bytes, proto: FrameProtocol,
                            max_fragments: int) -> WSConnection:
        """Write the 101 `head`, hand the transport to a new `WSConnection`, replay early bytes."""
        transport = self._transport
        transport.write(head)
        self._parser = None  # the HTTP side is done: keep idle connections small
        self._state.http.pop(self, None)  # `websockets` has it now
        conn = WSConnection(proto, transport, self._state, max_fragments)
        transport.set_protocol(conn)
        tail, self._tail = self._tail, b""
        if tail:
            conn.data_received(tail)
        transport.resume_reading()
        return conn


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
