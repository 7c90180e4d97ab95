"""Keepalive pings and the release of websockets' `Protocol` while a connection is idle.

`Resting` is mixed into `WSConnection`, which owns the state it uses (its slots). The
server's sweeps (server/keepalive.py) call `keepalive` (ping when due, close 1011 when a
ping went unanswered) and `rest`: a connection that received nothing since the previous
rest sweep and holds nothing in progress releases its `FrameProtocol` (`frames.park`,
~1.3 KiB); the next bytes rebuild it (`_frames`). Pings and the client's pongs need no
protocol (`frames.ping_frame`, `frames.lone_pong`), so keepalive alone never wakes a
resting connection. docs/design.md "What an idle subscribed connection holds".
"""

from __future__ import annotations

import os

from websockets.frames import Frame
from websockets.protocol import OPEN, Protocol

from ..errors import CloseCode
from .assembly import Assembler
from .frames import FrameProtocol, Parked, park, ping_frame, revive
from .outbound import Outbound


class Resting(Outbound):
    """The idle side of `WSConnection` (see the module docstring)."""

    # The keepalive and rest state lives here; WSConnection declares the rest of its slots.
    __slots__ = ("_busy", "_last_ping", "_live", "_parked", "_ping")

    _throttled: bool
    _unparsed: bytearray | None
    _deferred: list[Frame] | None
    _assembly: Assembler | None
    _live: FrameProtocol | None
    _parked: Parked | None
    _busy: bool
    _ping: tuple[bytes, float] | None
    _last_ping: float

    def _frames(self) -> FrameProtocol:
        """The frame protocol, rebuilt if it was parked (`rest`)."""
        proto = self._live
        if proto is None:
            assert self._parked is not None
            proto = self._live = revive(self._parked)
            self._parked = None
            self._state.awake[self] = None
        return proto

    @property
    def _proto(self) -> Protocol:
        """`_frames()`, for the code that needs only websockets' `Protocol` (outbound)."""
        return self._frames()

    @_proto.setter
    def _proto(self, proto: Protocol) -> None:
        assert isinstance(proto, FrameProtocol)
        self._live, self._parked = proto, None
        self._state.awake[self] = None

    @property
    def resting(self) -> bool:
        """True while the frame protocol is released (see `rest`)."""
        return self._live is None

    def rest(self) -> bool:
        """Called by the server's rest sweep (server/keepalive.py): a connection that
        received nothing since the previous sweep and holds nothing in progress releases
        its websockets `Protocol` (`frames.park`); the next bytes rebuild it (~15 µs).
        True when it is resting (or closing) afterwards: it can leave the awake set."""
        if self._busy:
            self._busy = False
            return False
        proto = self._live
        if proto is None or self._closing:
            return True
        if (self._throttled or self._unparsed or self._deferred
                or (self._assembly is not None and self._assembly.busy)):
            return False
        parked = park(proto)
        if parked is None:
            return False
        # The parser generator's frame holds the protocol: closed (it waits at a frame
        # boundary, `park` checked), the protocol is freed now, by its reference count,
        # instead of staying as cyclic garbage (~1.3 KiB) until a full collection.
        proto.parser.close()
        self._live, self._parked = None, parked
        return True

    def _on_pong(self, data: bytes | bytearray | memoryview) -> None:
        if self._ping is not None and data == self._ping[0]:
            self._ping = None

    # -- keepalive ---------------------------------------------------------------------
    def keepalive(self, now: float, interval: float, timeout: float) -> None:
        """Called by the server's sweep: ping when due, close 1011 when a ping went unanswered."""
        if self._closing:
            return
        if self._ping is not None:
            if timeout and now - self._ping[1] > timeout:
                self.close_nowait(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            return
        live = self._live
        if interval and now - self._last_ping >= interval and (live is None
                                                                or live.state is OPEN):
            payload = os.urandom(4)
            self._ping = (payload, now)
            if live is None:  # parked: the ping needs no protocol (nor the pong)
                self._queue(ping_frame(payload))
            else:
                live.send_ping(payload)
                self._pump()
            self._last_ping = now
