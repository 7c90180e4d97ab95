"""What a session needs from its connection (`Peer`), and the token bucket its rate
limits are counted with (`TokenBucket`). Apart from `hub/session.py` so a transport can
implement `Peer` without importing the session's machinery."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol


class Peer(Protocol):
    """The connection side a session needs (a `pubsocket.web.Connection` fits)."""

    def deliver(self, frame: bytes) -> None: ...

    def close_nowait(self, code: int, reason: str = "") -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_max_message_size(self, size: int) -> None: ...

    @property
    def backlog(self) -> int:
        """Bytes queued for this connection that the peer has not taken yet (cheap: read
        before every history or recovery reply, `hub.replies.busy`)."""
        ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class TokenBucket:
    """`rate` tokens per second up to `burst`; ``rate == 0`` never limits."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._last = time.monotonic()

    def take(self, n: int = 1) -> bool:
        """Spend `n` tokens; False (spending none) when fewer are left."""
        if not self._rate:
            return True
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True


def take_tokens(full_at: float, n: int, rate: float, burst: int) -> float | None:
    """`TokenBucket.take` whose whole state is one float (the generic cell rate
    algorithm): `full_at`, the monotonic time the bucket is full again (0.0: full). The
    bucket holds ``burst - (full_at - now) * rate`` tokens, at most `burst` (at least
    1). Returns the new `full_at` after spending `n` tokens, or None (spending none)
    when fewer are left. A session keeps its rate limit this way: one float instead of
    a `TokenBucket` and its two (docs/design.md "What an idle subscribed connection
    holds"). `rate` must be > 0."""
    now = time.monotonic()
    start = full_at if full_at > now else now
    after = start + n / rate
    if (after - now) * rate > max(burst, 1) + 1e-9:
        return None
    return after
