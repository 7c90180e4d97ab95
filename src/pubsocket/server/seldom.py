"""What a native WebSocket holds only in rarer states, in one object made on first use.

An idle subscribed connection must stay small (docs/design.md "What an idle subscribed
connection holds"): every slot of `WSConnection` costs 8 bytes per connection. The
futures a `receive`, a `send` (writing paused) and a `close` wait on, the close
timer, the access log record, the pull-mode inbox, the close once it happened
and a fragment cap other than the server's live in a `Seldom`, made the first time one
of them is set. `Rarely` (mixed into `WSConnection` through `Outbound`) shows them
under their old attribute names: None (or 0, or the default) until set, and setting
the default while there is no `Seldom` makes none.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import ConnectionClosed
from .writes import WriteQueue

if TYPE_CHECKING:
    from .state import ServerState

AccessRecord = tuple[str, tuple[str, int] | None, float]  # (path, peer, loop time opened)


class Seldom:
    """The rarely used state of one connection (see the module docstring)."""

    __slots__ = ("access", "close_timer", "drain", "gone", "inbox", "inbox_size", "lost",
                 "max_fragments", "waiter")

    def __init__(self) -> None:
        self.access: AccessRecord | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.drain: asyncio.Future[None] | None = None
        self.gone: ConnectionClosed | None = None
        self.inbox: list[str | bytes] | None = None
        self.inbox_size = 0
        self.lost: asyncio.Future[None] | None = None
        self.max_fragments: int | None = None  # None: the server's (settings)
        self.waiter: asyncio.Future[None] | None = None


class Rarely(WriteQueue):
    """A `WriteQueue` showing the `Seldom` fields as attributes of the connection (see
    the module docstring). A `WriteQueue` itself so that both slot layouts are one chain
    (two slotted bases of one class would clash)."""

    __slots__ = ("_seldom",)

    _seldom: Seldom | None
    _state: ServerState

    def _more(self) -> Seldom:
        seldom = self._seldom
        if seldom is None:
            seldom = self._seldom = Seldom()
        return seldom

    @property
    def _drain(self) -> asyncio.Future[None] | None:
        return self._seldom.drain if self._seldom is not None else None

    @_drain.setter
    def _drain(self, value: asyncio.Future[None] | None) -> None:
        if value is not None or self._seldom is not None:
            self._more().drain = value

    @property
    def _waiter(self) -> asyncio.Future[None] | None:
        return self._seldom.waiter if self._seldom is not None else None

    @_waiter.setter
    def _waiter(self, value: asyncio.Future[None] | None) -> None:
        if value is not None or self._seldom is not None:
            self._more().waiter = value

    @property
    def _lost(self) -> asyncio.Future[None] | None:
        return self._seldom.lost if self._seldom is not None else None

    @_lost.setter
    def _lost(self, value: asyncio.Future[None] | None) -> None:
        if value is not None or self._seldom is not None:
            self._more().lost = value

    @property
    def _close_timer(self) -> asyncio.TimerHandle | None:
        return self._seldom.close_timer if self._seldom is not None else None

    @_close_timer.setter
    def _close_timer(self, value: asyncio.TimerHandle | None) -> None:
        if value is not None or self._seldom is not None:
            self._more().close_timer = value

    @property
    def _gone(self) -> ConnectionClosed | None:
        return self._seldom.gone if self._seldom is not None else None

    @_gone.setter
    def _gone(self, value: ConnectionClosed | None) -> None:
        if value is not None or self._seldom is not None:
            self._more().gone = value

    @property
    def _inbox(self) -> list[str | bytes] | None:
        return self._seldom.inbox if self._seldom is not None else None

    @_inbox.setter
    def _inbox(self, value: list[str | bytes] | None) -> None:
        if value is not None or self._seldom is not None:
            self._more().inbox = value

    @property
    def _inbox_size(self) -> int:
        return self._seldom.inbox_size if self._seldom is not None else 0

    @_inbox_size.setter
    def _inbox_size(self, value: int) -> None:
        if value or self._seldom is not None:
            self._more().inbox_size = value

    @property
    def _max_fragments(self) -> int:
        seldom = self._seldom
        if seldom is not None and seldom.max_fragments is not None:
            return seldom.max_fragments
        return self._state.settings.max_fragments

    @_max_fragments.setter
    def _max_fragments(self, value: int) -> None:
        if value != self._state.settings.max_fragments or self._seldom is not None:
            self._more().max_fragments = value

    @property
    def access(self) -> AccessRecord | None:
        """(path, peer, loop time opened) when the access log is on (server/access.py)."""
        return self._seldom.access if self._seldom is not None else None

    @access.setter
    def access(self, value: AccessRecord | None) -> None:
        if value is not None or self._seldom is not None:
            self._more().access = value
