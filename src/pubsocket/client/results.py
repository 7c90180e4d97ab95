"""Replies of the read commands: `history`, `presence`, `presence_stats`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .subscription import Message


@dataclass(frozen=True)
class HistoryPage:
    """Kept publications (oldest first) and the topic's position (`offset`, `epoch`):
    subscribe with ``since=(page.offset, page.epoch)`` to continue right after them."""

    topic: str
    messages: list[Message]
    offset: int | None
    epoch: str | None


class Member(NamedTuple):
    """One connection in a topic's presence: the token's `sub` and `info` claims."""

    user: str | None
    info: Any


class PresenceStats(NamedTuple):
    """How many connections and distinct users a topic's presence holds."""

    connections: int
    users: int
