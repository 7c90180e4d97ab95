"""The read path of a native WebSocket connection: bytes in, frames and messages out.

Whole single-frame messages at a frame boundary are split by `fastframes.split_frames`
(inflated by the connection's permessage-deflate extension when compressed,
`fastframes.inflate`) and handed to `_message` without websockets' parser (nor its
protocol object: a parked connection stays parked); everything else (control frames,
fragments, partial frames, anything invalid) is parsed by websockets' sans-I/O
`Protocol` and handled frame by frame by `_on_frame`. Both paths share the fairness limits below.
`Inbound` is mixed into `WSConnection`, which owns the state it uses (its slots).
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.exceptions import PayloadTooBig
from websockets.extensions import Extension
from websockets.frames import Frame

from .deflate import InflateBudget
from .fastframes import (
    DEFLATED,
    NO_LIMIT,
    PONG,
    TEXT,
    cut_short,
    fail_as_parser,
    fast_limit,
    inflate,
    split_frames,
)
from .frames import lone_pong
from .resting import Resting

FRAMES_PER_TICK = 64  # inbound frames handled per loop iteration (fairness under bursts)
PARSE_SLICE = 16 * 1024  # inbound bytes parsed per loop iteration (fairness under bursts)


class Inbound(Resting):
    """The read path of `WSConnection` (see the module docstring)."""

    # The read path's own state; WSConnection declares the rest of its slots.
    __slots__ = ("_deferred", "_throttled", "_unparsed")

    _deferred: list[Frame] | None  # frames left for the next loop iteration
    _throttled: bool  # a _continue is scheduled (reading paused meanwhile)
    _unparsed: bytearray | None  # bytes left for the next loop iteration

    _reading_paused: bool

    def _on_frame(self, frame: Frame) -> None:
        raise NotImplementedError

    def _message(self, data: bytes, text: bool) -> None:
        raise NotImplementedError

    def _refused(self, exc: Exception) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        self._state.stats.bytes_in += len(data)
        if (self._live is None and self._unparsed is None  # (else it may end a frame)
                and not self._throttled and (pong := lone_pong(data)) is not None):
            self._on_pong(pong)  # a keepalive answer: no need to rebuild the protocol
            return
        self._busy = True
        if self._throttled:  # a burst is being worked through: queue behind it
            if self._unparsed is None:
                self._unparsed = bytearray(data)
            else:
                self._unparsed += data  # in place: no copy of what is already queued
            return
        kept = self._unparsed
        if kept is None:
            self._feed(data)
            return
        kept += data  # the beginning of a frame `_feed` kept, and what follows it
        self._unparsed = None
        self._feed(kept)

    # Fairness: one connection's burst (thousands of publishes in one 256 KB read) must
    # not hold up every other connection. Per loop iteration a connection parses at most
    # PARSE_SLICE bytes and handles at most FRAMES_PER_TICK frames; the rest waits for
    # the next iteration with reading paused (tests/integration/test_fairness.py).
    # With permessage-deflate, what a slice inflates to counts against the server's
    # per-iteration budget too (server/deflate.py `InflateBudget`), on either path.
    # Outside a burst, `_unparsed` holds only the beginning of a frame for the fast
    # path (`cut_short`).
    def _feed(self, data: bytes | bytearray) -> None:
        live, parked = self._live, self._parked
        params = live if live is not None else parked
        assert params is not None  # one of them always is
        budget = self._state.inflate if params.extensions else None
        if budget is not None and not budget.admit(budget.bound(
                min(len(data), PARSE_SLICE), params.max_message_size)):
            self._unparsed = bytearray(data)  # empty: data_received and _continue took it
            self._throttle()
            return
        limit = -1 if self._closing else fast_limit(live, parked)
        if limit >= 0 and self._split(data, limit, params.extensions, budget):
            return
        proto = self._proto
        if len(data) > PARSE_SLICE:
            self._unparsed = bytearray(data[PARSE_SLICE:])
            data = data[:PARSE_SLICE]
            self._throttle()
        proto.receive_data(data)
        frames: list[Frame] = proto.events_received()  # type: ignore[assignment]
        self._handle(frames)
        exc = proto.parser_exc
        refused = exc is not None and not self._closing  # failed by this read
        if budget is not None:
            inflated = sum(len(f.data) for f in frames)
            if refused and isinstance(exc, PayloadTooBig):
                inflated += proto.max_message_size or 0  # inflated up to the limit
            budget.charge(inflated)
        if refused and exc is not None:
            self._refused(exc)

    def _split(self, data: bytes | bytearray, limit: int, extensions: Sequence[Extension],
               budget: InflateBudget | None) -> bool:
        """The fast path: the leading whole single-frame messages of `data` handled
        (`split_frames`; compressed ones inflated by `inflate`, and charged to `budget`),
        and what follows kept or queued. False when it took nothing (websockets' turn)."""
        deflate = bool(extensions)
        end, messages = split_frames(data, limit, FRAMES_PER_TICK, PARSE_SLICE, deflate)
        short = (len(messages) < FRAMES_PER_TICK
                 and cut_short(data, end, limit, PARSE_SLICE, deflate))
        if not (end or short):
            return False
        max_size = None if limit == NO_LIMIT else limit
        inflated = 0
        for payload, opcode in messages:
            if opcode < PONG:  # TEXT or BINARY (PONG is 10, the compressed ones above it)
                self._message(payload, opcode == TEXT)  # after a close: dropped
            elif opcode == PONG:
                self._on_pong(payload)
            else:  # TEXT | DEFLATED or BINARY | DEFLATED
                try:
                    payload = inflate(extensions, payload, opcode, max_size)
                # websockets' parser fails the connection on any exception from an
                # extension's decode (1011 for the unexpected ones): so does the fast path
                except Exception as exc:  # noqa: BLE001 - handled and logged by fail_as_parser
                    self._inflate_failed(exc, budget, inflated)
                    return True
                inflated += len(payload)
                self._message(payload, opcode == TEXT | DEFLATED)
        if budget is not None:
            budget.charge(inflated)
        if self._live is not None:
            self._pump()  # what a revived protocol has to send (a close)
        if short:  # a frame begun: kept in a buffer of its own size (it may stay a while)
            self._unparsed = bytearray(memoryview(data)[end:])
        elif end < len(data):  # this iteration's share is spent: a burst
            if isinstance(data, bytearray):
                del data[:end]  # no copy: CPython moves a bytearray's start
                self._unparsed = data
            else:
                self._unparsed = bytearray(memoryview(data)[end:])
            self._throttle()
        return True

    def _inflate_failed(self, exc: Exception, budget: InflateBudget | None,
                        inflated: int) -> None:
        """A compressed frame the fast path took did not inflate: the connection fails
        as websockets' parser fails it for the same frame (close 1009, 1002 or 1011; the
        bytes after it are discarded), refused and charged as on the slow path."""
        proto = self._frames()
        fail_as_parser(proto, exc)
        refused = not self._closing  # else a close was under way: as the slow path
        if budget is not None:
            if refused and isinstance(exc, PayloadTooBig):
                inflated += proto.max_message_size or 0  # inflated up to the limit
            budget.charge(inflated)
        if refused:
            self._refused(exc)
        self._pump()

    def _handle(self, frames: list[Frame]) -> None:
        if len(frames) > FRAMES_PER_TICK:
            frames, self._deferred = frames[:FRAMES_PER_TICK], frames[FRAMES_PER_TICK:]
            self._throttle()
        for frame in frames:
            self._on_frame(frame)
        self._pump()

    def _throttle(self) -> None:
        if not self._throttled:
            self._throttled = True
            self._transport.pause_reading()
            self._state.loop.call_soon(self._continue)

    def _continue(self) -> None:
        """One more slice of a burst: the deferred frames, else the next bytes."""
        self._throttled = False
        if self._gone is not None:
            return
        frames, self._deferred = self._deferred, None
        if frames:
            self._handle(frames)
        elif self._unparsed:
            data, self._unparsed = self._unparsed, None
            self._feed(data)  # what it leaves unthrottled is a frame begun: read on
        if self._throttled:
            return
        if self._deferred or (frames and self._unparsed):  # bytes queued behind frames
            self._throttle()
        elif not self._reading_paused and not self._transport.is_closing():
            self._transport.resume_reading()

    def eof_received(self) -> bool | None:
        while self._deferred or self._unparsed:  # what came before EOF is handled first
            frames, self._deferred = self._deferred or [], None
            data, self._unparsed = bytes(self._unparsed or b""), None
            self._handle(frames)
            if data:
                self._proto.receive_data(data)
                self._handle(self._proto.events_received())  # type: ignore[arg-type]
        self._proto.receive_eof()
        self._pump()
        return None
