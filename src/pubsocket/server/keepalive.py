"""One keepalive sweep per server instead of one timer per connection, and the rest sweep.

Every `tick` seconds the keepalive sweep asks each WebSocket to ping (when
`ping_interval` passed since its last ping) or to give up (when its ping went unanswered
for `ping_timeout`). A timer per connection costs ~0.5 KiB of memory each; the sweep
costs ~0.3 µs per connection per tick.

Every `REST_TICK` seconds the rest sweep asks each *awake* WebSocket (one whose frame
protocol is alive: `ServerState.awake`) to `rest`: one that received nothing since the
previous rest sweep releases its websockets `Protocol` (~1.3 KiB; server/resting.py)
and leaves the awake set, so resting connections cost the sweep nothing.

New connections (`ServerState.fresh`) are asked sooner: every `FRESH_TICK` seconds for
their first `FRESH_CHECKS` checks, then by the rest sweep like the others. A connection
typically sends its first commands at once and then nothing: its protocol goes after
~0.05-0.1 s instead of 0.25-0.5 s, so when thousands connect at once (a reconnect
storm) a fifth as many protocols are alive together, and fewer freed blocks are left
between the survivors' objects (idle_bench RSS per connection ~250 B lower). The fresh
sweep walks only connections younger than ~0.2 s, and its timer is armed only while there
are any (`ServerState.wake_fresh`): an idle server does not wake 20 times a second.
"""

from __future__ import annotations

import asyncio

from .state import ServerState

REST_TICK = 0.25  # seconds between rest sweeps: a connection rests 0.25-0.5 s after its last byte
FRESH_TICK = 0.05  # seconds between the sweeps over new connections
FRESH_CHECKS = 4  # checks of a new connection at FRESH_TICK before REST_TICK takes over


class Keepalive:
    """Periodic ping/pong bookkeeping and resting for every WebSocket of one server."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        settings = state.settings
        periods = [p for p in (settings.ping_interval, settings.ping_timeout) if p]
        self._tick = max(0.02, min([1.0, *(p / 4 for p in periods)]))
        self._handle: asyncio.TimerHandle | None = None
        self._rest_handle: asyncio.TimerHandle | None = None
        self._fresh_handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Begin sweeping (pings only when `ping_interval` is set)."""
        if self._state.settings.ping_interval:
            self._state.sweep_at = self._state.loop.time() + self._tick
            self._handle = self._state.loop.call_later(self._tick, self._sweep)
        self._rest_handle = self._state.loop.call_later(REST_TICK, self._rest)
        self._state.wake_fresh = self._wake_fresh
        if self._state.fresh:
            self._wake_fresh()

    def _wake_fresh(self) -> None:
        """Sweep the new connections from FRESH_TICK on (idempotent): armed while any
        is fresh, so an idle server does not wake 20 times a second for nothing."""
        if self._fresh_handle is None:
            self._fresh_handle = self._state.loop.call_later(FRESH_TICK, self._rest_fresh)

    def stop(self) -> None:
        """Stop sweeping."""
        for handle in (self._handle, self._rest_handle, self._fresh_handle):
            if handle is not None:
                handle.cancel()
        self._handle = self._rest_handle = self._fresh_handle = None
        self._state.wake_fresh = None

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
        awake, fresh = self._state.awake, self._state.fresh
        for conn in list(awake):
            if conn not in fresh and conn.rest():  # fresh ones: their own sweep's
                awake.pop(conn, None)
        self._rest_handle = self._state.loop.call_later(REST_TICK, self._rest)

    def _rest_fresh(self) -> None:
        state = self._state
        fresh, awake = state.fresh, state.awake
        for conn, checks in list(fresh.items()):
            if conn.rest():
                awake.pop(conn, None)
                fresh.pop(conn, None)
            elif checks + 1 >= FRESH_CHECKS:
                fresh.pop(conn, None)  # still busy: the rest sweep's from now on
            else:
                fresh[conn] = checks + 1
        self._fresh_handle = (state.loop.call_later(FRESH_TICK, self._rest_fresh)
                              if fresh else None)
