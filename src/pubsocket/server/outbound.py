"""The outbound side of a native WebSocket connection: one write per loop tick, the budget.

Everything a connection sends (hub deliveries, replies, control frames) is queued in one
list that the server's `Flusher` writes with a single `transport.write` per loop
iteration. After the write, hub deliveries are held to the outbound budget: a transport
holding more than `outbound_budget` bytes is a slow consumer and is closed with 4008.
A buffer above the high-water mark that does not shrink for `write_timeout` seconds is
aborted. `Outbound` is mixed into `WSConnection`, which owns the state it uses.
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.protocol import Protocol

from ..errors import CloseCode
from ..hub.wire import Batch
from .seldom import Rarely
from .state import ServerState

log = logging.getLogger("pubsocket.server")

HIGH_WATER = 64 * 1024  # transport buffer size that pauses writing (asyncio's default)


class Outbound(Rarely):
    """The write path of `WSConnection` (see the module docstring)."""

    # The write state lives here; WSConnection declares the rest of its slots.
    __slots__ = ("_hub_frames", "_out")

    _out: list[bytes | Batch] | None  # None: nothing queued (an idle connection holds no list)
    _hub_frames: bool
    _closing: bool
    _state: ServerState
    _transport: Any
    _proto: Protocol

    def close_nowait(self, code: int, reason: str = "") -> None:
        raise NotImplementedError

    def deliver(self, frame: bytes) -> None:
        """Queue a pre-encoded frame for this tick's write. Never blocks or raises."""
        if self._closing:
            self._state.stats.dropped += 1
            return
        out = self._out
        if out is None:
            self._state.flusher.mark(self._flush)
            self._out = [frame]
        else:
            if out[-1].__class__ is Batch:
                out[-1].open = False  # the batch's later frames would overtake this one
            out.append(frame)
        self._hub_frames = True

    def deliver_batch(self, batch: Batch) -> None:
        """Queue a topic group's shared `Batch` (the hub appends to it while it is open)
        for this tick's write. Never blocks or raises. A closing connection drops it."""
        if self._closing:
            self._state.stats.dropped += 1  # counted once per batch
            return
        self._queue(batch)
        self._hub_frames = True

    @property
    def backlog(self) -> int:
        """Bytes queued for this tick's write plus what the transport still holds."""
        queued = sum(len(x.joined()) if x.__class__ is Batch else len(x)
                     for x in self._out or ())
        return queued + int(self._transport.get_write_buffer_size())

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self._state.loop.create_future()
        self._arm_stall()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None
        if self._stall is not None:
            self._stall[0].cancel()
            self._stall = None

    # -- outbound ----------------------------------------------------------------------
    def _pump(self) -> None:
        """Move what the protocol wants to send into the queue; act on EOF."""
        for data in self._proto.data_to_send():
            if data:
                self._queue(data)
            else:  # SEND_EOF: the closing handshake is over (or failed): drop TCP
                self._flush()
                self._transport.close()

    def _queue(self, item: bytes | Batch) -> None:
        """Queue `item` after what is queued (closing an open batch there)."""
        out = self._out
        if out is None:
            self._state.flusher.mark(self._flush)
            self._out = [item]
            return
        if out[-1].__class__ is Batch:
            out[-1].open = False  # the batch's later frames would overtake this one
        out.append(item)

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        self._out = None
        transport = self._transport
        if transport.is_closing():
            return
        first = out[0]
        if len(out) == 1:
            if first.__class__ is Batch:  # the fan-out's common case: one shared batch
                frames = len(first)
                data = first.data or first.joined()  # joined once, by its first writer
            else:
                frames = 1
                data = first  # type: ignore[assignment]
        else:
            frames = 0
            parts: list[bytes] = []
            for x in out:
                if x.__class__ is Batch:
                    frames += len(x)
                    parts.append(x.joined())
                else:
                    frames += 1
                    parts.append(x)  # type: ignore[arg-type]
            data = b"".join(parts)
        transport.write(data)
        stats = self._state.stats
        stats.frames_out += frames
        stats.bytes_out += len(data)
        # The budget bounds what the hub queued without waiting; send() is bounded by its
        # own backpressure instead, so one large echo never counts as a slow consumer.
        if not self._hub_frames:
            return
        self._hub_frames = False
        budget = self._state.settings.outbound_budget
        if budget and not self._closing and transport.get_write_buffer_size() > budget:
            stats.slow_closes += 1
            log.info("closing a slow consumer (outbound buffer over %d bytes)", budget)
            self.close_nowait(CloseCode.SLOW_CONSUMER, "slow consumer")

    def _arm_stall(self) -> None:
        timeout = self._state.settings.write_timeout
        if not timeout or self._stall is not None:
            return
        self._stall = (self._state.loop.call_later(timeout, self._check_stall),
                       self._transport.get_write_buffer_size())

    def _check_stall(self) -> None:
        armed = self._stall[1] if self._stall is not None else 0
        self._stall = None
        size = self._transport.get_write_buffer_size()
        if size <= HIGH_WATER:
            return
        if size >= armed:
            log.info("aborting a connection whose writes made no progress")
            self._transport.abort()
            return
        self._arm_stall()
