"""`WSConnection`: an open WebSocket on an asyncio transport.

Bytes come in through `inbound.Inbound` (whole single-frame messages split by us, every
other frame parsed by websockets' sans-I/O `Protocol`); we assemble fragmented
messages (with a fragment cap and fail-fast UTF-8 checks), keep the connection alive with
pings, and queue everything we send in one list that the `Flusher` writes once per loop
tick. Outbound budget: when the transport holds more than `outbound_budget` bytes the peer
is a slow consumer and is closed with 4008; when the buffer stays above the high-water
mark without shrinking for `write_timeout` seconds the connection is aborted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN

from ..errors import CloseCode, ConnectionClosed
from ..hub.wire import WireSet
from ..log import refusals
from ..web.websocket import Listener, MessageIterator, translate_close
from . import access
from .assembly import Assembler, AssemblyError
from .frames import BINARY_WIRES, FrameProtocol, Parked, choose_wires
from .inbound import Inbound
from .outbound import HIGH_WATER
from .state import ServerState

log = logging.getLogger("pubsocket.server")

CLOSE_TIMEOUT = 3.0  # seconds to wait for the peer's close frame before dropping TCP
INBOUND_QUEUE = 64  # messages buffered before we stop reading from the socket
INBOUND_BYTES = 1024 * 1024  # characters or bytes buffered before we stop reading


class WSConnection(Inbound, MessageIterator, asyncio.Protocol):
    """The native implementation of `pubsocket.web.Connection` (see its contract).

    Slotted, with futures and buffers created only when needed, and websockets'
    `Protocol` released while the connection is idle (`rest`, `frames.park`): an idle
    subscribed connection must stay small (docs/design.md "What an idle subscribed
    connection holds").
    """

    __slots__ = (
        "_assembly",
        "_closing",
        "_listener",
        "_reading_paused",
        "_state",
        "_transport",
        "wires",
    )

    def __init__(self, proto: FrameProtocol, transport: Any, state: ServerState,
                 max_fragments: int) -> None:
        self.wires: WireSet = choose_wires(proto, state.settings.compression_min_size)
        # The futures of receive/send/close, the close and stall timers, the access
        # record, the pull-mode inbox, the close and a fragment cap other than the
        # server's live in a `Seldom` made on first use (server/seldom.py).
        self._seldom = None
        self._live: FrameProtocol | None = proto  # None while parked (see `rest`)
        self._parked: Parked | None = None  # what rebuilds it then
        self._busy = False  # bytes came in since the last sweep
        self._transport = transport
        self._state = state
        self._out = None  # made by the first frame queued
        self._stall = None  # the write stall timer (server/writes.py) while armed
        self._hub_frames = False  # the queue holds hub deliveries (the budget applies)
        self._listener: Listener | None = None
        self._closing = False  # a close frame was sent or the peer is gone
        self._reading_paused = False
        self._max_fragments = max_fragments
        self._assembly: Assembler | None = None  # made by the first fragmented message
        self._deferred: list[Frame] | None = None  # frames left for the next loop iteration
        self._unparsed: bytearray | None = None  # bytes left for the next loop iteration
        self._throttled = False  # a _continue is scheduled (reading paused meanwhile)
        # keepalive (driven by the server's Keepalive sweep)
        self._ping: tuple[bytes, float] | None = None  # (payload, sent at) until answered
        # The keepalive sweep's next run (shared by the connections opened before it, so
        # none holds a float of its own): the first ping is `ping_interval` after it.
        self._last_ping = state.sweep_at
        transport.set_write_buffer_limits(high=HIGH_WATER)
        state.websockets[self] = None
        state.awake[self] = None
        if not state.fresh and state.wake_fresh is not None:
            state.wake_fresh()
        state.fresh[self] = 0
        state.stats.ws_opened += 1

    # -- the Connection API ------------------------------------------------------------
    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol (the frame protocol's, alive or parked)."""
        live = self._live
        if live is not None:
            return live.subprotocol
        return self._parked.subprotocol if self._parked is not None else None

    @property
    def peer_address(self) -> Any:
        """The client's address as the transport reports it (it keeps it, even after the
        close), asked when needed (refusal logs) rather than kept per connection."""
        return self._transport.get_extra_info("peername")

    @property
    def close_codes(self) -> Mapping[int, tuple[int, str]] | None:
        """How this connection's closes are translated (see `Connection`)."""
        live = self._live
        return live.close_codes if live is not None else (
            self._parked.close_codes if self._parked is not None else None)

    @close_codes.setter
    def close_codes(self, codes: Mapping[int, tuple[int, str]] | None) -> None:
        self._frames().close_codes = codes

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or received, or the TCP connection dropped."""
        return self._closing

    async def receive(self) -> str | bytes:
        """The next message; raises `ConnectionClosed` once the peer has left."""
        while not self._inbox:
            if self._gone is not None:
                raise self._gone
            self._waiter = self._state.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        inbox = self._inbox
        assert inbox is not None  # the loop above waited for a message
        message = inbox.pop(0)  # at most INBOUND_QUEUE entries
        self._inbox_size -= len(message)
        if (self._reading_paused and len(inbox) < INBOUND_QUEUE // 4
                and self._inbox_size < INBOUND_BYTES // 4):
            self._reading_paused = False
            self._transport.resume_reading()
        return message

    async def send(self, message: str | bytes) -> None:
        """Queue one message; waits while the peer is not reading (backpressure)."""
        if self._closing:
            raise self._gone or ConnectionClosed(CloseCode.NORMAL, "closing")
        if isinstance(message, str):
            self._proto.send_text(message.encode())
        elif isinstance(message, bytes | bytearray | memoryview):
            self._proto.send_binary(bytes(message))
        else:
            raise TypeError("send() takes str or bytes")
        self._pump()
        if self._drain is not None:
            await asyncio.shield(self._drain)

    def abort(self) -> None:
        """Drop the TCP connection now, without a close handshake (end of shutdown)."""
        self._transport.abort()

    @property
    def attached(self) -> bool:
        """True once a listener took over (push mode)."""
        return self._listener is not None

    def attach(self, listener: Listener) -> None:
        """Push mode: hand every message to `listener` (see `Connection`)."""
        self._listener = listener
        inbox, self._inbox, self._inbox_size = self._inbox or [], None, 0
        for message in inbox:
            self._notify(message)
        if self._gone is not None:
            self._notify_closed()

    def binary_wires(self) -> WireSet:
        """The wires of a binary protocol (see `Connection`): binary frames."""
        return BINARY_WIRES

    def set_max_message_size(self, size: int) -> None:
        """Refuse (1009) messages over `size` bytes from the next frame on (0: no limit).
        Checked from each frame header, before the payload is buffered."""
        self._proto.max_message_size = size or None

    def pause_reading(self) -> None:
        """Stop reading from the socket until `resume_reading`."""
        if not self._reading_paused and not self._transport.is_closing():
            self._reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        if self._reading_paused and not self._transport.is_closing():
            self._reading_paused = False
            self._transport.resume_reading()

    def _notify(self, message: str | bytes) -> None:
        assert self._listener is not None
        try:
            self._listener.on_message(message)
        except Exception:
            log.exception("a WebSocket listener failed")
            self.close_nowait(CloseCode.INTERNAL_ERROR, "internal error")

    def _notify_closed(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            listener.on_close()
        except Exception:
            log.exception("a WebSocket listener failed on close")

    def close_nowait(self, code: int, reason: str = "") -> None:
        """Start the closing handshake with `code` (idempotent, never raises)."""
        if self._closing:
            return
        self._closing = True
        if self._live is None or self._live.state is OPEN:  # parked: open
            self._proto.send_close(*translate_close(self.close_codes, code, reason))
        self._pump()
        self._flush()
        if self._gone is None and self._close_timer is None:
            self._close_timer = self._state.loop.call_later(CLOSE_TIMEOUT,
                                                            self._transport.abort)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with `code` and wait until TCP is closed. Idempotent; safe after the peer left."""
        self.close_nowait(code, reason)
        if self._gone is not None:
            return
        if self._lost is None:
            self._lost = self._state.loop.create_future()
        await asyncio.shield(self._lost)

    def _refused(self, exc: Exception) -> None:
        """websockets failed the connection itself (a frame over the size limit, a
        protocol error) and sent the close: log the refusal once, drop what is queued."""
        self._closing = True
        self._unparsed = None
        # The traceback holds the failed parse's frames and their locals until this
        # connection is collected: for a deflate bomb, the up to max_message_size bytes
        # inflated before the limit stopped it (200 such sockets held +200 MiB).
        exc.__traceback__ = None
        kind = "message_size" if isinstance(exc, PayloadTooBig) else "frame_protocol"
        refusals.warn(kind, self._transport.get_extra_info("peername"))

    # -- asyncio.Protocol (the read path: inbound.py) ------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        live = self._live  # parked: no close frame either way
        rcvd = live.close_rcvd if live is not None else None
        sent = live.close_sent if live is not None else None
        if rcvd is not None:
            self._gone = ConnectionClosed(rcvd.code, rcvd.reason)
        elif sent is not None:
            self._gone = ConnectionClosed(sent.code, sent.reason)
        else:
            self._gone = ConnectionClosed(1006, "")  # abnormal closure: no close frame
        for timer in (self._stall[0] if self._stall is not None else None,
                      self._close_timer):
            if timer is not None:
                timer.cancel()
        self._out = None
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._state.websockets.pop(self, None)
        self._state.awake.pop(self, None)
        self._state.fresh.pop(self, None)
        self._state.stats.ws_closed += 1
        if self.access is not None:
            path, peer, opened = self.access
            access.closed(path, self._gone.code, self._state.loop.time() - opened, peer)
        self._notify_closed()

    # -- inbound -----------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        try:
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:  # the common case: a whole message in one frame
                    self._message(bytes(frame.data), opcode is Opcode.TEXT)
                else:
                    if self._assembly is None:
                        self._assembly = Assembler(self._max_fragments)
                    self._assembly.start(frame)
            elif opcode is Opcode.CONT:
                whole = self._assembly.add(frame) if self._assembly is not None else None
                if whole is not None:
                    self._message(*whole)
            elif opcode is Opcode.PONG:
                self._on_pong(frame.data)
            elif opcode is Opcode.CLOSE:
                self._closing = True
                self._wake()
        except AssemblyError as exc:
            self._fail(exc.code, exc.reason)

    def _message(self, data: bytes, text: bool) -> None:
        if self._closing:
            return  # the slow-consumer or shutdown close is under way
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return
        self._state.stats.messages_in += 1
        if self._listener is not None:
            self._notify(message)
            return
        if self._inbox is None:
            self._inbox = []
        self._inbox.append(message)
        self._inbox_size += len(message)
        self._wake()
        if not self._reading_paused and (len(self._inbox) >= INBOUND_QUEUE
                                         or self._inbox_size >= INBOUND_BYTES):
            self._reading_paused = True
            self._transport.pause_reading()

    def _fail(self, code: CloseCode, reason: str) -> None:
        if self._assembly is not None:
            self._assembly.reset()
        self._proto.fail(*translate_close(self.close_codes, code, reason))
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
