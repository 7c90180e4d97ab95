"""`CommandRelay`: hands commands POSTed for an emulated session to the session holding it.

STAND-IN (local only) for the relay branch's implementation of the same interface
(docs: /work/wt/SPEC-fallback.md "The relay interface"). It knows the sessions of this
process only: a command for another node is answered `UNKNOWN_SESSION`, so the client
reconnects (to a node that holds its session) instead of waiting.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable


class RouteResult(enum.Enum):
    """What `CommandRelay.route` did with a command."""

    LOCAL_FED = "local_fed"  # fed synchronously to a session of this node
    SENT = "sent"  # handed to the broker for the named node
    UNKNOWN_SESSION = "unknown_session"  # no such session (on this node)


class CommandRelay:
    """Hands commands POSTed for an emulated session to the node and session holding it."""

    __slots__ = ("_feeds", "node")

    def __init__(self, node: str | None = None) -> None:
        self.node = node or secrets.token_hex(8)  # stable for this process's lifetime
        self._feeds: dict[str, Callable[[bytes], None]] = {}

    def register(self, session_id: str, feed: Callable[[bytes], None]) -> None:
        """`feed(data)` receives the commands POSTed for `session_id` from now on."""
        self._feeds[session_id] = feed

    def unregister(self, session_id: str) -> None:
        self._feeds.pop(session_id, None)

    async def route(self, node: str, session_id: str, data: bytes) -> RouteResult:
        """Feed `data` to `session_id` when it lives here (the stand-in sends nothing)."""
        feed = self._feeds.get(session_id) if node == self.node else None
        if feed is None:
            return RouteResult.UNKNOWN_SESSION
        feed(data)
        return RouteResult.LOCAL_FED

    async def start(self) -> None:
        """Nothing to start locally."""

    async def close(self) -> None:
        self._feeds.clear()
