"""`Pinger`: one sweep that sends application pings to every connected Centrifuge session
and ends those that never connect.

Centrifuge SDKs expect the server's ``{}`` every `ping` seconds (announced in the connect
reply) and reconnect when it stops. One timer per endpoint walks its live peers; no timer
or task lives per connection. It starts with the first peer on the running loop (native
server or ASGI alike) and stops when nothing is left to do. The same timer ends
connections that never sent their connect command, on its own cadence: every `check` =
min(ping, half the connect timeout) seconds (half the connect timeout alone with pings
off), a session still waiting at two checks in a row is closed as stale (between one
and two `check` intervals after it opened: so never later than the connect timeout).
The one timer is armed for whichever is due first.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ...hub.wire import Wire


class Pingable(Protocol):
    def deliver(self, frame: bytes) -> None: ...


class Waiting(Protocol):
    @property
    def closed(self) -> bool: ...

    def close(self, code: int, reason: str) -> None: ...


class Pinger:
    """Delivers the `ping` payload to every added peer each `interval` seconds (0:
    never), framed once per wire, and closes waiting sessions that do not connect in
    time (`wait`)."""

    __slots__ = ("_armed_at", "_check", "_handle", "_interval", "_loop", "_marked",
                 "_next_check", "_next_ping", "_ping", "_stale", "peers", "waiting")

    def __init__(self, interval: float, ping: bytes, stale: tuple[int, str]) -> None:
        """`stale`: the (code, reason) a session that never connected is closed with."""
        self._interval = interval
        self._stale = stale
        self._check = interval if interval > 0 else 0.0  # the stale cadence (0: none)
        self._ping = ping
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0  # the loop time the handle fires at
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_ping: float | None = None  # loop times; None: not scheduled
        self._next_check: float | None = None
        self.peers: dict[Pingable, Wire] = {}  # peer -> the wire its pings go through
        self.waiting: set[Waiting] = set()  # opened, no connect yet
        self._marked: set[Waiting] = set()  # were waiting at the last check

    def add(self, peer: Pingable, wire: Wire) -> None:
        """Ping `peer` through `wire` from the next sweep on (call from the event loop)."""
        self.peers[peer] = wire
        self._start()

    def wait(self, session: Waiting, within: float) -> None:
        """Close `session` as stale unless `connected` follows within two checks; a
        check runs every min(ping, `within` / 2) seconds, so the close comes at most
        `within` seconds after this call (`within` <= 0: only pings count)."""
        if within > 0:
            half = within / 2
            self._check = min(self._interval, half) if self._interval > 0 else half
        self.waiting.add(session)
        self._start()

    def connected(self, session: Waiting) -> None:
        self.waiting.discard(session)
        self._marked.discard(session)

    def discard(self, peer: Pingable) -> None:
        self.peers.pop(peer, None)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # First use, or an app served again on a new loop: (re)start the timer here.
            if self._handle is not None:
                self._handle.cancel()
            self._handle = None
            self._loop = loop
            self._next_ping = self._next_check = None
        now = loop.time()
        if self.peers and self._interval > 0 and self._next_ping is None:
            self._next_ping = now + self._interval
        if self.waiting and self._check > 0 and self._next_check is None:
            self._next_check = now + self._check
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have the one timer fire at the earliest due event (none: stop it)."""
        due = min((t for t in (self._next_ping, self._next_check) if t is not None),
                  default=None)
        if self._handle is not None:
            if due is not None and self._armed_at <= due:
                return  # already firing no later than needed
            self._handle.cancel()
            self._handle = None
        if due is not None:
            self._armed_at = due
            self._handle = loop.call_at(due, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        loop, at = self._loop, self._armed_at
        if loop is None:
            return
        now = loop.time()
        if self._next_check is not None and self._next_check <= at:
            for session in [s for s in self._marked if s in self.waiting]:
                self.connected(session)
                if not session.closed:
                    session.close(*self._stale)
            self._marked = set(self.waiting)
            self._next_check = now + self._check if self.waiting else None
        if self._next_ping is not None and self._next_ping <= at:
            frames: dict[Wire, bytes] = {}
            for peer, wire in list(self.peers.items()):
                frame = frames.get(wire)
                if frame is None:
                    frame = frames[wire] = wire.frame(self._ping)
                peer.deliver(frame)  # deliver never raises; a closed peer drops it
            self._next_ping = now + self._interval if self.peers else None
        self._arm(loop)
