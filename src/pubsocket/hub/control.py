"""Server-side control of connections on every node, through the broker.

`disconnect_user` and `unsubscribe_user` publish a small JSON command on the reserved
topic `CONTROL_TOPIC` (a ``$`` never appears in a client topic, so no client can
subscribe or publish to it); every node's hub receives it and acts on its own sessions
of that user. The registry maps users to their local sessions.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import orjson

log = logging.getLogger("pubsocket.hub")

CONTROL_TOPIC = "$control"
PRESENCE_PREFIX = "$p:"  # "$p:<topic>": join/leave events of <topic>, between nodes


class Controlled(Protocol):
    """A session the server can act on."""

    def kick(self, code: int, reason: str) -> None: ...

    def drop(self, topic: str, reason: str) -> None: ...


class Registry:
    """Local sessions by user (only sessions whose principal has a user)."""

    __slots__ = ("_users",)

    def __init__(self) -> None:
        self._users: dict[str, set[Controlled]] = {}

    def add(self, user: str, session: Controlled) -> None:
        self._users.setdefault(user, set()).add(session)

    def discard(self, user: str, session: Controlled) -> None:
        sessions = self._users.get(user)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._users[user]

    def apply(self, payload: bytes) -> None:
        """Carry out one control command on this node's sessions."""
        try:
            command: Any = orjson.loads(payload)
            op, user = command["op"], command["user"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignored a malformed control message")
            return
        for session in list(self._users.get(user, ())):
            if op == "disconnect":
                session.kick(int(command.get("code", 4003)), str(command.get("reason", "")))
            elif op == "unsubscribe":
                session.drop(str(command.get("topic", "")), "unsubscribed by the server")

    def __len__(self) -> int:
        return sum(len(s) for s in self._users.values())


def encode(op: str, user: str, **fields: Any) -> bytes:
    return orjson.dumps({"op": op, "user": user, **fields})
