"""`Heartbeat`: one sweep per hub that sends each `pubsocket.v1` connection its
application ping, so clients that cannot see WebSocket pings (browsers) notice a
half-open link (a NAT timeout, a laptop resumed on another network).

Cost at 10,000 idle connections: no timer or task per connection, only its entry in
one set (what the sweep walks); every `interval` seconds one sweep frames the ping once
per wire (`Wire.frame`, so a transport's framing and compression are done once) and
queues the same bytes to every connection, ~1 µs each. The sweep sends to busy
connections too: telling idle from busy would put a timestamp write on every delivery,
which costs more than a ~40-byte frame every interval.

Only connections that asked (the v1 ``heartbeat`` command, answered with the
interval) are pinged, so clients written before it see nothing new. A connection is
in the set once and gets one ping per sweep: at most one per interval, however often
it asks (each ask is an ordinary command: one rate-limit token). The pings themselves
cost the client nothing. The timer starts with the first connection on the running loop
(native server or ASGI alike) and stops when none is left.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..codecs import Codec
from .wire import Wire


class Peer(Protocol):
    def deliver(self, frame: bytes) -> None: ...


class Beating(Protocol):
    """What the sweep needs of a session: its peer and its wire (codec x framer)."""

    @property
    def peer(self) -> Peer: ...

    @property
    def wire(self) -> Wire: ...


class Heartbeat:
    """Pings every added session each `interval` seconds (0: never)."""

    __slots__ = ("_handle", "_loop", "_payloads", "interval", "sessions")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.sessions: set[Beating] = set()
        self._payloads: dict[Codec, bytes | None] = {}  # the ping of each codec seen
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def payload(self, codec: Codec) -> bytes | None:
        """`codec`'s ping (None: it has none, or the heartbeat is off)."""
        if self.interval <= 0:
            return None
        try:
            return self._payloads[codec]
        except KeyError:
            ping = self._payloads[codec] = codec.heartbeat(self.interval)
            return ping

    def add(self, session: Beating) -> float:
        """Ping `session` at every sweep until `discard` (again: no change); the
        interval, 0 when it will get none (heartbeat off, or a codec without a ping).
        Call from the event loop."""
        if self.payload(session.wire.codec) is None:
            return 0.0
        self.sessions.add(session)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or an app served again on a new loop
            if self._handle is not None:
                self._handle.cancel()
            self._loop, self._handle = loop, None
        if self._handle is None:
            self._handle = loop.call_later(self.interval, self._sweep)
        return self.interval

    def discard(self, session: Beating) -> None:
        self.sessions.discard(session)

    def _sweep(self) -> None:
        self._handle = None
        frames: dict[Wire, bytes] = {}  # framed once per wire
        for session in list(self.sessions):
            wire = session.wire
            frame = frames.get(wire)
            if frame is None:
                ping = self.payload(wire.codec)
                if ping is None:  # pragma: no cover - only pinging codecs are added
                    continue
                frame = frames[wire] = wire.frame(ping)
            session.peer.deliver(frame)  # never raises; a closing peer drops it
        if self.sessions and self._loop is not None:
            self._handle = self._loop.call_later(self.interval, self._sweep)
