"""The WebSocket API handlers use: ``ws = await Websocket(request).connection()``.

The web layer defines the interfaces; the transport implements them (the native server
in `pubsocket.server`, or the ASGI adapter). Handlers and the hub only see `Connection`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..auth.tokens import BEARER_SUBPROTOCOL, offered_subprotocols, split_bearer
from ..errors import ConnectionClosed, HTTPError
from ..hub.wire import WireSet

if TYPE_CHECKING:
    from .request import Request


class Listener(Protocol):
    """Receives a connection's messages in push mode (see `Connection.attach`)."""

    def on_message(self, message: str | bytes) -> None: ...

    def on_close(self) -> None: ...


@runtime_checkable
class Connection(Protocol):
    """An open WebSocket.

    `receive()` returns str for text and bytes for binary messages and raises
    `ConnectionClosed` once the peer has left. `send()` raises `ConnectionClosed` after
    the connection closed. `close()` is idempotent and safe after the peer left.
    `deliver(frame)` is the hub's fast path: it queues one pre-encoded text frame
    without awaiting and never raises; a closed connection drops it.

    `attach(listener)` switches to push mode: every message (including ones already
    received) goes to `listener.on_message` as it arrives, `listener.on_close` is called
    once when the connection ends, and the handler may return without the connection
    being closed. No task waits per idle connection then. `receive()` is not used in
    push mode. `pause_reading` / `resume_reading` apply backpressure to the peer.
    `set_max_message_size(size)` changes the message size limit set at the upgrade
    (0: none) from the next message on, e.g. raised once a peer authenticated in-band.

    `wires(codec)` is the transport's `WireSet`: the wire (codec x this transport's
    framing) a session of this connection writes through, shared by every connection of
    the same kind so the hub frames each broadcast once per wire. `deliver` takes bytes
    framed by that wire. `binary_wires()` is the `WireSet` of a binary protocol
    (Centrifuge Protobuf): called once at accept, it makes the connection's deliveries
    binary messages.

    `close_codes` (None by default), set once by the endpoint, translates every close
    this connection sends, the transport's own included (slow consumer, shutdown,
    keepalive timeout): code -> (code, reason) of the wire protocol in use (Centrifuge).
    """

    close_codes: Mapping[int, tuple[int, str]] | None
    wires: WireSet

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol negotiated at the upgrade (None: none)."""
        ...

    @property
    def closed(self) -> bool: ...

    def binary_wires(self) -> WireSet: ...

    async def receive(self) -> str | bytes: ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def close_nowait(self, code: int, reason: str = "") -> None: ...

    def deliver(self, frame: bytes) -> None: ...

    @property
    def attached(self) -> bool: ...

    def attach(self, listener: Listener) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_max_message_size(self, size: int) -> None: ...
    @property
    def backlog(self) -> int:
        """Bytes queued for the peer that it has not taken yet (cheap to read)."""
        ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...

    async def __anext__(self) -> str | bytes: ...


def translate_close(codes: Mapping[int, tuple[int, str]] | None, code: int,
                    reason: str) -> tuple[int, str]:
    """(code, reason) as `Connection.close_codes` says to send them."""
    if codes is None:
        return code, reason
    return codes.get(code, (code, reason))


class MessageIterator:
    """`async for message in ws` for any transport's connection: ends on ConnectionClosed."""

    __slots__ = ()

    async def receive(self) -> str | bytes:
        raise NotImplementedError

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None


class Upgrader(Protocol):
    """Performs the opening handshake for one upgrade request (implemented by transports)."""

    @property
    def accepted(self) -> Connection | None:
        """The connection once `accept` succeeded."""
        ...

    @property
    def open_connections(self) -> int:
        """WebSocket connections this process holds open now (for the connection cap)."""
        ...

    async def accept(
        self,
        subprotocols: Sequence[str] = (),
        max_message_size: int | None = None,
        max_fragments: int | None = None,
    ) -> Connection:
        """Answer 101 and return the open connection, or raise `HTTPError` (400/426).

        `max_message_size` / `max_fragments` override the settings for this connection
        (0 = unlimited)."""
        ...


class Websocket:
    """tina4's entry point: wraps a request that asked for a WebSocket upgrade."""

    def __init__(self, request: Request) -> None:
        self.request = request

    async def connection(
        self,
        subprotocols: Sequence[str] = (),
        *,
        max_message_size: int | None = None,
        max_fragments: int | None = None,
    ) -> Connection:
        """Complete the handshake. A request that is not an upgrade gets HTTP 426 at once.

        `subprotocols` are the server's supported subprotocols in order of preference;
        the first one the client also offered is selected (`Connection.subprotocol`).
        ``bearer`` and a token offered after it are never selected, whatever the
        transport (they are credentials, auth/tokens.py).
        `max_message_size` and `max_fragments` override the server-wide limits for
        this connection (0 = unlimited).
        """
        upgrader = self.request.upgrader
        if upgrader is None:
            raise HTTPError(426, "upgrade_required", "this endpoint needs a WebSocket upgrade")
        if upgrader.accepted is not None:
            return upgrader.accepted
        return await upgrader.accept(self._selectable(subprotocols), max_message_size,
                                     max_fragments)

    def _selectable(self, subprotocols: Sequence[str]) -> Sequence[str]:
        if not subprotocols:
            return subprotocols
        values = self.request.headers.getall("sec-websocket-protocol")
        if not any(BEARER_SUBPROTOCOL in v for v in values):
            return subprotocols  # the common case: no parse
        reserved = {BEARER_SUBPROTOCOL, *split_bearer(offered_subprotocols(values))[1]}
        return [s for s in subprotocols if s not in reserved]


__all__ = ["Connection", "ConnectionClosed", "Listener", "Upgrader", "Websocket",
           "translate_close"]
