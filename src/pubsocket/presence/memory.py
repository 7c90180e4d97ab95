"""In-process presence: one process's truth, no TTL needed (entries die with the process).

Several `MemoryPresence` "nodes" may share one `MemoryPresenceStore` (tests, and apps that
run several hubs in one process); each node's `close()` removes only its own entries.
"""

from __future__ import annotations

from .base import ClientInfo, Presence, Removed, Stats

UserKey = tuple[str, str]


def user_key(client: ClientInfo) -> UserKey:
    """The key connections are grouped by: the user, or the client itself when anonymous."""
    return ("u", client.user) if client.user is not None else ("c", client.client_id)


class MemoryPresenceStore:
    """The shared state: clients per topic and connection counts per (topic, user)."""

    def __init__(self) -> None:
        self.clients: dict[str, dict[str, ClientInfo]] = {}
        self.counts: dict[str, dict[UserKey, int]] = {}


class MemoryPresence(Presence):
    """`Presence` in memory. Every method completes without awaiting anything."""

    def __init__(self, store: MemoryPresenceStore | None = None) -> None:
        self._store = store or MemoryPresenceStore()
        self._own: dict[str, set[str]] = {}  # topic -> client ids this node added

    async def close(self) -> None:
        """Remove this node's entries."""
        for topic, ids in list(self._own.items()):
            for client_id in list(ids):
                await self.remove(topic, client_id)
        self._own.clear()

    async def add(self, topic: str, client: ClientInfo) -> bool:
        """Record `client`; True if first of its user in `topic` (a re-add is not)."""
        clients = self._store.clients.setdefault(topic, {})
        self._own.setdefault(topic, set()).add(client.client_id)
        if client.client_id in clients:
            clients[client.client_id] = client  # refresh its info, not its count
            return False
        clients[client.client_id] = client
        counts = self._store.counts.setdefault(topic, {})
        key = user_key(client)
        counts[key] = counts.get(key, 0) + 1
        return counts[key] == 1

    async def remove(self, topic: str, client_id: str) -> Removed | None:
        """Forget `client_id`; `last_of_user` when no connection of its user is left."""
        own = self._own.get(topic)
        if own is not None:
            own.discard(client_id)
            if not own:
                del self._own[topic]
        clients = self._store.clients.get(topic)
        client = clients.pop(client_id, None) if clients is not None else None
        if client is None:
            return None
        if not clients:
            del self._store.clients[topic]
        counts = self._store.counts[topic]
        key = user_key(client)
        counts[key] -= 1
        last = counts[key] == 0
        if last:
            del counts[key]
            if not counts:
                del self._store.counts[topic]
        return Removed(client.user, last)

    async def get(self, topic: str) -> dict[str, ClientInfo]:
        """A copy of the clients in `topic`."""
        return dict(self._store.clients.get(topic, {}))

    async def stats(self, topic: str) -> Stats:
        """Connections and distinct users in `topic`."""
        return Stats(len(self._store.clients.get(topic, {})),
                     len(self._store.counts.get(topic, {})))
