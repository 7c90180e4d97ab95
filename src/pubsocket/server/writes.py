"""`WriteQueue`: the write path every native push connection shares (a WebSocket, an
SSE or http_stream response).

Everything the connection sends is queued in one list (`_out`: frames, and the hub's
shared per-tick `Batch` es) that the server's `Flusher` (server/flush.py) writes with a
single `transport.write` per loop iteration. After a write that held hub deliveries,
the outbound budget applies: a transport holding more than `outbound_budget` bytes is
a slow consumer and is cut (`_cut_slow`: a WebSocket closes 4008, a stream aborts). A
buffer above the high-water mark that does not shrink for `write_timeout` seconds is
aborted (`_arm_stall`, from `pause_writing`).

The subclass owns the state used here (`_state`, `_transport`, `_closing`) and says how
a slow consumer is cut. `deliver`, `deliver_batch` and `_flush` are the fan-out's hot
path: they are written out here, once, with no call the WebSocket did not make before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..hub.wire import Batch
from .state import ServerState

log = logging.getLogger("pubsocket.server")

HIGH_WATER = 64 * 1024  # transport buffer size that pauses writing (asyncio's default)


class WriteQueue:
    """One write per loop tick, the outbound budget, the stall timer (module docstring)."""

    __slots__ = ("_hub_frames", "_out", "_stall")

    # Queued items: frames (an SSE stream's may be views of shared bytes) and batches;
    # None while nothing is queued (an idle connection holds no list).
    _out: list[bytes | memoryview | Batch] | None
    _hub_frames: bool  # the queue holds hub deliveries (the budget applies)
    _closing: bool
    _state: ServerState
    _transport: Any
    # The stall timer and the buffer size when it was armed (None while unarmed): one
    # slot, since every slot of an idle connection costs 8 bytes.
    _stall: tuple[asyncio.TimerHandle, int] | None

    def _cut_slow(self, budget: int) -> None:
        """End a connection whose transport holds more than `budget` unsent bytes."""
        raise NotImplementedError

    def deliver(self, frame: bytes) -> None:
        """Queue a pre-encoded frame for this tick's write. Never blocks or raises."""
        if self._closing:
            self._state.stats.dropped += 1
            return
        out = self._out  # `_queue` written out: this and deliver_batch are per delivery
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
        for this tick's write, after what is queued. Never blocks or raises. A closing
        connection drops it (counted once per batch)."""
        if self._closing:
            self._state.stats.dropped += 1
            return
        out = self._out
        if out is None:
            self._state.flusher.mark(self._flush)
            self._out = [batch]
        else:
            if out[-1].__class__ is Batch:
                out[-1].open = False
            out.append(batch)
        self._hub_frames = True

    def _queue(self, item: bytes | memoryview | Batch) -> None:
        """Queue `item` after what is queued (closing an open batch there)."""
        out = self._out
        if out is None:
            self._state.flusher.mark(self._flush)
            self._out = [item]
            return
        if out[-1].__class__ is Batch:
            out[-1].open = False  # the batch's later frames would overtake this one
        out.append(item)

    @property
    def backlog(self) -> int:
        """Bytes queued for this tick's write plus what the transport still holds."""
        queued = sum(len(x.joined()) if x.__class__ is Batch else len(x)
                     for x in self._out or ())
        return queued + int(self._transport.get_write_buffer_size())

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
            parts: list[bytes | memoryview] = []
            for x in out:
                if x.__class__ is Batch:
                    frames += len(x)
                    parts.append(x.joined())
                else:
                    frames += 1
                    parts.append(x)  # type: ignore[arg-type]
            data = b"".join(parts)  # one copy of this tick's frames (views included)
        transport.write(data)
        stats = self._state.stats
        stats.frames_out += frames
        stats.bytes_out += len(data)
        # The budget bounds what the hub queued without waiting; a WebSocket's send() is
        # bounded by its own backpressure instead, so one large echo is never "slow".
        if not self._hub_frames:
            return
        self._hub_frames = False
        budget = self._state.settings.outbound_budget
        if budget and not self._closing and transport.get_write_buffer_size() > budget:
            stats.slow_closes += 1
            self._cut_slow(budget)

    # -- the stall timer ---------------------------------------------------------------
    def pause_writing(self) -> None:
        self._arm_stall()

    def resume_writing(self) -> None:
        self._disarm_stall()

    def _arm_stall(self) -> None:
        timeout = self._state.settings.write_timeout
        if not timeout or self._stall is not None:
            return
        self._stall = (self._state.loop.call_later(timeout, self._check_stall),
                       self._transport.get_write_buffer_size())

    def _disarm_stall(self) -> None:
        stall = self._stall
        if stall is not None:
            stall[0].cancel()
            self._stall = None

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
