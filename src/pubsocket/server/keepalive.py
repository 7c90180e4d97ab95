"""One keepalive sweep per server instead of one timer per connection.

Every `tick` seconds the sweep asks each WebSocket to ping (when `ping_interval` passed
since its last ping) or to give up (when its ping went unanswered for `ping_timeout`),
and to `rest`: a connection that received nothing since the previous sweep releases its
frame parser (server/websocket.py; ~1.3 KiB each). A timer per connection costs ~0.5 KiB
of memory each; the sweep costs ~0.3 µs per connection per tick. It runs with pings off
too (every `REST_TICK` seconds then).
"""

from __future__ import annotations

import asyncio

from .state import ServerState

REST_TICK = 1.0  # seconds between sweeps when pings are off (idle connections rest)


class Keepalive:
    """Periodic ping/pong bookkeeping for every WebSocket of one server."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        settings = state.settings
        periods = [p for p in (settings.ping_interval, settings.ping_timeout) if p]
        self._tick = max(0.02, min([REST_TICK, *(p / 4 for p in periods)]))
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Begin sweeping."""
        self._handle = self._state.loop.call_later(self._tick, self._sweep)

    def stop(self) -> None:
        """Stop sweeping."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        state = self._state
        now = state.loop.time()
        interval = state.settings.ping_interval
        timeout = state.settings.ping_timeout
        for conn in list(state.websockets):
            if interval:
                conn.keepalive(now, interval, timeout)
            conn.rest()
        self._handle = state.loop.call_later(self._tick, self._sweep)
