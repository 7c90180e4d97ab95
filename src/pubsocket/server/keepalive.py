"""One keepalive sweep per server instead of one timer per connection, and the rest sweep.

Every `tick` seconds the keepalive sweep asks each WebSocket to ping (when
`ping_interval` passed since its last ping) or to give up (when its ping went unanswered
for `ping_timeout`). A timer per connection costs ~0.5 KiB of memory each; the sweep
costs ~0.3 µs per connection per tick.

Every `REST_TICK` seconds the rest sweep asks each *awake* WebSocket (one whose frame
protocol is alive: `ServerState.awake`) to `rest`: one that received nothing since the
previous rest sweep releases its websockets `Protocol` (~1.3 KiB; server/resting.py)
and leaves the awake set, so resting connections cost the sweep nothing.
"""

from __future__ import annotations

import asyncio

from .state import ServerState

REST_TICK = 0.25  # seconds between rest sweeps: a connection rests 0.25-0.5 s after its last byte


class Keepalive:
    """Periodic ping/pong bookkeeping and resting for every WebSocket of one server."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        settings = state.settings
        periods = [p for p in (settings.ping_interval, settings.ping_timeout) if p]
        self._tick = max(0.02, min([1.0, *(p / 4 for p in periods)]))
        self._handle: asyncio.TimerHandle | None = None
        self._rest_handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Begin sweeping (pings only when `ping_interval` is set)."""
        if self._state.settings.ping_interval:
            self._state.sweep_at = self._state.loop.time() + self._tick
            self._handle = self._state.loop.call_later(self._tick, self._sweep)
        self._rest_handle = self._state.loop.call_later(REST_TICK, self._rest)

    def stop(self) -> None:
        """Stop sweeping."""
        for handle in (self._handle, self._rest_handle):
            if handle is not None:
                handle.cancel()
        self._handle = self._rest_handle = None

    def _sweep(self) -> None:
        state = self._state
        now = state.loop.time()
        interval = state.settings.ping_interval
        timeout = state.settings.ping_timeout
        for conn in list(state.websockets):
            conn.keepalive(now, interval, timeout)
        state.sweep_at = now + self._tick
        self._handle = state.loop.call_later(self._tick, self._sweep)

    def _rest(self) -> None:
        awake = self._state.awake
        for conn in list(awake):
            if conn.rest():
                awake.pop(conn, None)
        self._rest_handle = self._state.loop.call_later(REST_TICK, self._rest)
