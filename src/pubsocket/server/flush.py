"""Write coalescing: every connection's queued frames go out in one write per loop tick.

The hub queues frames with `WSConnection.deliver`, which only appends to a list; the
first frame of a tick registers the connection here, and one `call_soon` per tick writes
each registered connection's frames with a single `transport.write`. A publisher that
sends k messages in one read costs each subscriber one syscall, not k.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Flusher:
    """Runs each registered flush callback once, on the next loop iteration."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Callable[[], None]] = []
        self._scheduled = False

    def mark(self, flush: Callable[[], None]) -> None:
        """Call `flush` once on the next iteration (callers mark once per batch)."""
        self._dirty.append(flush)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for flush in dirty:
            flush()
