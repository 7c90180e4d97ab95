"""A connection's token lifetime: the expiry notice, the grace period, the 4001 close.

Plain clients (the seed page's) are closed with 4001 when the token's ``exp`` passes, as
before. A ``pubsocket.v1`` client is told ``{"type": "expiring", "expires_at": T}``
`NOTICE` seconds ahead (at once if less is left) and may send ``{"action": "refresh",
"token": ...}``; without one it is closed with 4001 `Settings.token_grace` seconds
after ``exp``. `reschedule` restarts the clock for a refreshed token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

NOTICE = 30.0  # seconds before exp that a v1 client hears its token is expiring


class TokenClock:
    """Timers for one connection's token; `cancel` on close."""

    __slots__ = ("_close", "_grace", "_handles", "_notify", "expires_at")

    def __init__(self, close: Callable[[], None], notify: Callable[[float], None] | None,
                 grace: float) -> None:
        self._close = close
        self._notify = notify  # None: no refresh possible (plain mode): close at exp
        self._grace = grace
        self._handles: list[asyncio.TimerHandle] | None = None  # None: no timer running
        self.expires_at: float | None = None

    def reschedule(self, expires_at: float | None) -> None:
        """Run the clock for a token that expires at `expires_at` (None: never)."""
        self.cancel()
        self.expires_at = expires_at
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        left = expires_at - time.time()
        if self._notify is None:
            self._handles = [loop.call_later(max(0.0, left), self._close)]
            return
        self._handles = [loop.call_later(max(0.0, left - NOTICE), self._notify, expires_at),
                         loop.call_later(max(0.0, left + self._grace), self._close)]

    def cancel(self) -> None:
        for handle in self._handles or ():
            handle.cancel()
        self._handles = None
