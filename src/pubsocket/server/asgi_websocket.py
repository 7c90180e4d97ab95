"""The WebSocket side of the ASGI adapter (server/asgi.py): `ASGIUpgrader`, the upgrade
the app's handlers accept through, and `ASGIConnection`, a `pubsocket.web.Connection`
over ASGI messages.

ASGI has no callbacks, so a reader task feeds an attached listener, and the hub's
non-blocking `deliver` hands frames to a writer task, bounded by the outbound budget
(4008 when exceeded). A message over the size limit closes with 1009; when the peer
leaves or the server shuts down, `receive()` raises `ConnectionClosed` and
`wait_closed()` returns, so handlers finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from ..errors import CloseCode, ConnectionClosed, HTTPError
from ..hub.wire import RAW, WireSet
from ..web.app import App
from ..web.websocket import Listener, MessageIterator, translate_close

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("pubsocket.asgi")


class Owner(Protocol):
    """What a connection needs of its `ASGIApp`: the app (its settings) and the count
    of open connections, which each connection adds itself to and takes itself out of
    exactly once (the app's `open_connections()` and the connection cap read it)."""

    app: App
    open_connections: int


class ASGIUpgrader:
    """The `pubsocket.web.Upgrader` of an ASGI ``websocket`` scope."""

    def __init__(self, owner: Owner, receive: Receive, send: Send,
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

    def __init__(self, owner: Owner, receive: Receive, send: Send,
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
