"""`Pinger`: one sweep that sends application pings to every connected Centrifuge session.

Centrifuge SDKs expect the server's ``{}`` every `ping` seconds (announced in the connect
reply) and reconnect when it stops. One timer per endpoint walks its live peers; no timer
or task lives per connection. It starts with the first peer on the running loop (native
server or ASGI alike) and stops when the last one leaves. The same sweep ends connections
that never sent their connect command: one still waiting at two sweeps in a row is
closed as stale (between one and two intervals after it opened).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Pingable(Protocol):
    def deliver(self, frame: bytes) -> None: ...


class Waiting(Protocol):
    def stale(self) -> None: ...


class Pinger:
    """Delivers `frame()` to every added peer each `interval` seconds (0: never)."""

    __slots__ = ("_frame", "_handle", "_interval", "_loop", "_marked", "peers", "waiting")

    def __init__(self, interval: float, frame: Callable[[], bytes]) -> None:
        self._interval = interval
        self._frame = frame
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.peers: set[Pingable] = set()
        self.waiting: set[Waiting] = set()  # opened, no connect yet
        self._marked: set[Waiting] = set()  # were waiting at the last sweep

    def add(self, peer: Pingable) -> None:
        """Ping `peer` from the next sweep on (call from the event loop)."""
        self.peers.add(peer)
        self._start()

    def wait(self, session: Waiting) -> None:
        """Close `session` as stale unless `connected` follows within two sweeps."""
        self.waiting.add(session)
        self._start()

    def connected(self, session: Waiting) -> None:
        self.waiting.discard(session)
        self._marked.discard(session)

    def _start(self) -> None:
        if self._interval <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop:
            # First peer, or an app served again on a new loop: (re)start the sweep here.
            if self._handle is not None:
                self._handle.cancel()
            self._loop = loop
            self._handle = loop.call_later(self._interval, self._sweep)

    def discard(self, peer: Pingable) -> None:
        self.peers.discard(peer)

    def _sweep(self) -> None:
        self._handle = None
        for session in [s for s in self._marked if s in self.waiting]:
            self.connected(session)
            session.stale()
        self._marked = set(self.waiting)
        if not (self.peers or self.waiting) or self._loop is None:
            return
        if self.peers:
            frame = self._frame()
            for peer in list(self.peers):  # deliver never raises; a closed peer drops it
                peer.deliver(frame)
        self._handle = self._loop.call_later(self._interval, self._sweep)
