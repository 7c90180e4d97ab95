"""History replies within the connection's outbound budget (issue 15).

A history reply is built whole before it is queued, so its cost is bounded before the
read: at most `Settings.history_reply_limit` publications and about
`Settings.history_reply_bytes` bytes per page (`Hub.history` passes both to the broker,
which stops reading there), and no history read starts while more than
`Settings.reply_backlog` bytes wait to be sent to the connection (`when_room`: it waits
for the client to read, and answers `too_many_requests`, a temporary error, if it does
not). The session runs a history command as a barrier, so at most one reply per
connection is being built at a time; the backlog rule bounds how many are queued: the
server builds replies only as fast as the client takes them. The bytes of every page and
recovery replay are charged to the connection (`ByteBudget`,
`Settings.history_reply_rate`): the next history read waits until they are earned back.

A page the byte cap cut short is still a valid page: the client continues from its last
offset with ``since`` (docs/protocol.md "History"). Recovery (a subscribe with
``since``) follows the same caps in `hub.core`, but all or nothing (`hub.recovery`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from ..brokers.base import HistoryPage, Publication, size_of
from ..errors import ErrorCode, OpError
from ..log import refusals
from ..protocol import CmdId, History
from . import operations

if TYPE_CHECKING:
    from .session import Session

_FIRST_LOOK = 0.005  # seconds until a waiting reply looks at the backlog again (doubling)
_LAST_LOOK = 0.25  # ... up to this


class ByteBudget:
    """History reply bytes a connection may be sent: `rate` per second, up to one
    second's worth saved. A reply is charged after it is built (its size is known only
    then), so the balance may go below zero; the next reply waits until it is back to
    zero. What one connection costs is thus at most `rate` bytes/s plus one reply."""

    __slots__ = ("_at", "_rate", "_tokens")

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = now

    def wait(self, now: float) -> float:
        """Seconds until the balance is back to zero (0: a reply may start now)."""
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def spend(self, n: int) -> None:
        self._tokens -= n


def charge(session: Session, pubs: Iterable[Publication]) -> None:
    """Charge a history reply or recovery replay of `pubs` to the connection."""
    rate = session.settings.history_reply_rate
    if not rate:
        return
    budget = session.reply_budget
    if budget is None:
        budget = session.reply_budget = ByteBudget(rate, asyncio.get_running_loop().time())
    budget.spend(sum(map(size_of, pubs)))


def _budget_wait(session: Session) -> float:
    budget = session.reply_budget
    return 0.0 if budget is None else budget.wait(asyncio.get_running_loop().time())


def when_room(session: Session, cmd_id: CmdId | None,
              then: Callable[[], Awaitable[None] | None]) -> Awaitable[None] | None:
    """Run `then` (a history read or a recovering subscribe) once the connection's
    outbound backlog is within `reply_backlog` and its `ByteBudget` is not overdrawn:
    now, or as a barrier that waits for that (the client reading what it was sent). A
    reply must not pile onto bytes the client has not taken; while it waits, later
    commands queue behind it (reading pauses past `session.MAX_QUEUED`). A backlog still
    over after `write_timeout` (10 s when that is off): `too_many_requests`."""
    cap = session.settings.reply_backlog
    if (not cap or session.peer.backlog <= cap) and not _budget_wait(session):
        return then()
    return _wait_for_room(session, cmd_id, then, cap)


async def _wait_for_room(session: Session, cmd_id: CmdId | None,
                         then: Callable[[], Awaitable[None] | None], cap: int) -> None:
    loop = asyncio.get_running_loop()
    # The byte rate is the client's own allowance: its wait is known, and not refused.
    while (owed := _budget_wait(session)) > 0:
        await asyncio.sleep(owed)
        if session.closed:
            return
    deadline = loop.time() + (session.settings.write_timeout or 10.0)
    delay = _FIRST_LOOK
    while cap and session.peer.backlog > cap:
        if loop.time() >= deadline:
            refusals.warn("reply_backlog")
            session.error(ErrorCode.TOO_MANY_REQUESTS,
                          "too many replies waiting to be read; read them and retry", cmd_id)
            return
        # Looked at again soon, then less often: a waiting connection costs a timer
        # every `_LAST_LOOK` seconds at most.
        await asyncio.sleep(delay)
        delay = min(delay * 2, _LAST_LOOK)
        if session.closed:
            return
    pending = then()
    if pending is not None:
        await pending


def history(session: Session, cmd: History) -> Awaitable[None] | None:
    """A permitted history command (`handlers.checked`): refused at once when the
    codec's dialect wants history kept (`Codec.requires_history`) and the topic keeps
    none, else read by `operations.read_history` (the read every front door makes)
    once there is room for its reply."""
    try:
        operations.history_kept(session.hub, cmd.topic, session.codec.requires_history)
    except OpError as exc:
        session.fail(exc, cmd.id)
        return None
    return when_room(session, cmd.id, lambda: _history(session, cmd))


def _history(session: Session, cmd: History) -> Awaitable[None] | None:
    try:
        page = operations.read_history(session.hub, cmd.topic, cmd.limit, cmd.since,
                                       reverse=cmd.reverse, newest=not cmd.oldest)
    except OpError as exc:
        session.fail(exc, cmd.id)
        return None
    if not isinstance(page, HistoryPage):
        return _finish_history(session, cmd, page)
    _history_reply(session, cmd, page)
    return None


async def _finish_history(session: Session, cmd: History, pending: Awaitable[HistoryPage]
                          ) -> None:
    try:
        page = await pending
    except OpError as exc:
        session.fail(exc, cmd.id)
        return
    _history_reply(session, cmd, page)


def _history_reply(session: Session, cmd: History, page: HistoryPage) -> None:
    charge(session, page.publications)
    session.reply(session.codec.history(cmd, page))
