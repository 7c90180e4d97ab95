"""The read commands of `Client`: `history`, `presence`, `presence_stats`.

`Queries` is a mixin: its methods build the command, send it with the host's
`_command(body, timeout)` (connection.py: waits for a connection, raises error replies
as `CommandError`/`Forbidden`, `Timeout`, `ClientClosed`) and parse the reply into the
value types of results.py with the `*_of` functions. Parsing never raises on a reply
missing optional fields: absent lists and maps read as empty, entries that are not
objects are skipped.
"""

from __future__ import annotations

from typing import Any, Protocol

from .results import HistoryPage, Member, PresenceStats
from .subscription import Message, Sender


class _Commands(Protocol):
    async def _command(self, body: dict[str, Any], timeout: float | None  # noqa: ASYNC109
                       ) -> dict[str, Any]: ...


def history_of(topic: str, reply: dict[str, Any]) -> HistoryPage:
    """A `history` reply as a `HistoryPage`."""
    messages = [Message(topic, p.get("data"), p.get("offset"), Sender.parse(p.get("from")))
                for p in reply.get("publications", ()) if isinstance(p, dict)]
    return HistoryPage(topic, messages, reply.get("offset"), reply.get("epoch"))


def presence_of(reply: dict[str, Any]) -> dict[str, Member]:
    """A `presence` reply as client id -> `Member`."""
    clients = reply.get("clients") or {}
    return {cid: Member(v.get("user"), v.get("info")) for cid, v in clients.items()
            if isinstance(v, dict)}


def presence_stats_of(reply: dict[str, Any]) -> PresenceStats:
    """A `presence_stats` reply as `PresenceStats` (absent counts read as 0)."""
    return PresenceStats(int(reply.get("connections", 0)), int(reply.get("users", 0)))


class Queries:
    """`history`, `presence` and `presence_stats`, for a class with `_command`."""

    async def history(self: _Commands, topic: str, *, limit: int | None = None,
                      since: tuple[int, str] | None = None, timeout: float | None = None  # noqa: ASYNC109
                      ) -> HistoryPage:
        """The kept publications (newest `limit`, or those after `since`) and the position.
        `CommandError("unrecoverable_position")` when history no longer reaches `since`."""
        body: dict[str, Any] = {"action": "history", "topic": topic}
        if limit is not None:
            body["limit"] = limit
        if since is not None:
            body["since"] = {"offset": since[0], "epoch": since[1]}
        return history_of(topic, await self._command(body, timeout))

    async def presence(self: _Commands, topic: str, *, timeout: float | None = None  # noqa: ASYNC109
                       ) -> dict[str, Member]:
        """Client id -> `Member(user, info)` for every subscriber of `topic`."""
        return presence_of(await self._command({"action": "presence", "topic": topic},
                                               timeout))

    async def presence_stats(self: _Commands, topic: str, *, timeout: float | None = None  # noqa: ASYNC109
                             ) -> PresenceStats:
        """How many connections and distinct users are subscribed to `topic`."""
        return presence_stats_of(await self._command(
            {"action": "presence_stats", "topic": topic}, timeout))
