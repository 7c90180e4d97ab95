"""The presence interface: who is subscribed to a topic, on every node.

Contract for every implementation (tests/presence runs the same tests on each):

* `add(topic, client)` is idempotent per client id and returns True when this was the
  user's first connection in the topic (across all nodes): the hub announces a join.
  A client whose `user` is None (anonymous) is its own user: always first, always last.
* `remove(topic, client_id)` returns `Removed(user, last_of_user)`, or None when the
  client was not present; `last_of_user` True means the hub announces a leave.
* `get` / `stats` never include entries that expired (a node that died); see `ttl`.
* Each node refreshes its own entries every `ttl / 3` while started; entries a node
  stopped refreshing vanish after `ttl` seconds, and the per-user counts follow.
* `close()` removes this node's entries (a clean shutdown leaves nothing behind).
* A store that cannot be reached raises `PresenceUnavailable` (never the driver's error).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from ..errors import PubsocketError

DEFAULT_TTL = 60.0  # seconds an entry outlives its node's last refresh


class PresenceUnavailable(PubsocketError):
    """The presence store cannot be reached; the operation was not carried out."""


class ClientInfo(NamedTuple):
    """One connection in a topic: its client id, user (None: anonymous), info claim, and
    its channel info there (a Centrifugo ``subs`` claim's ``info``; None: none)."""

    client_id: str
    user: str | None
    info: Any = None
    chan_info: Any = None


class Removed(NamedTuple):
    """What `remove` removed: the client's user, and whether it was the user's last one."""

    user: str | None
    last_of_user: bool


class Stats(NamedTuple):
    """Live connections in a topic and distinct users among them."""

    connections: int
    users: int


class Presence(ABC):
    """A presence store. `ttl` is in seconds (`DEFAULT_TTL` unless configured)."""

    ttl: float = DEFAULT_TTL

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (the refresh task). Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Stop refreshing and remove this node's entries. Idempotent."""

    @abstractmethod
    async def add(self, topic: str, client: ClientInfo) -> bool:
        """Record `client` in `topic`; True if it is its user's first connection there."""

    @abstractmethod
    async def remove(self, topic: str, client_id: str) -> Removed | None:
        """Forget `client_id` in `topic` (None if it was not there)."""

    @abstractmethod
    async def get(self, topic: str) -> dict[str, ClientInfo]:
        """Every live client in `topic`, by client id."""

    @abstractmethod
    async def stats(self, topic: str) -> Stats:
        """Live connections and distinct users in `topic`."""
