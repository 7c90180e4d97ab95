"""Presence in the hub: who is subscribed to which topic, and join/leave events.

Opt-in per topic pattern (`Settings.presence`, ``pubsub(presence=...)``). When a
session's subscription to such a topic takes effect, its client (id, user, ``info``
claim) is added to the `Presence` store; when it ends, removed. The store says whether
that was the user's first (or last) connection in the topic across every node. A join
(leave) event goes out for every client, on the broker channel ``$p:<topic>``, marked
whether it was the user's first (last) one (its "edge"). Every node subscribed to the
topic receives it and pushes it to its watchers whose codec wants it: pubsocket.v1
(``{"type": "join", ...}``) only the edges, so a second tab of the same user announces
nothing; Centrifuge every client (`Codec.join_leave_per_client`), as Centrifugo does.
With a Centrifugo config file, events go out only in namespaces with ``join_leave``, and
those with ``force_push_join_leave`` push them to every subscriber (`pushes_all`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import orjson

from ..presence.base import ClientInfo, Presence, PresenceUnavailable
from .control import PRESENCE_PREFIX

if TYPE_CHECKING:
    from ..auth.namespaces import NamespacePolicy

log = logging.getLogger("pubsocket.hub")

Publish = Callable[[str, bytes], Coroutine[Any, Any, None]]


class PresenceHooks:
    """The hub's presence side; `store` is None until presence is enabled somewhere."""

    def __init__(self, patterns: Iterable[str], events: bool,
                 namespaces: NamespacePolicy | None = None) -> None:
        self.patterns = list(patterns)
        self.events = events
        self.namespaces = namespaces
        self.store: Presence | None = None
        self._cache: dict[str, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # (topic, client id) whose join was not announced, so neither is its leave (a
        # Centrifugo ``subs`` claim's join_leave override); one per such live entry.
        self._quiet: set[tuple[str, str]] = set()

    def enable(self, patterns: Iterable[str], events: bool | None = None) -> None:
        """Add topic patterns (``pubsub(presence=...)``)."""
        self.patterns.extend(patterns)
        if events is not None:
            self.events = events
        self._cache.clear()

    def enabled(self, topic: str) -> bool:
        found = self._cache.get(topic)
        if found is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            # "!pattern" excludes (a Centrifugo file's namespaces without presence)
            found = self._cache[topic] = any(
                fnmatchcase(topic, p) for p in self.patterns if p[:1] != "!") and not any(
                fnmatchcase(topic, p[1:]) for p in self.patterns if p[:1] == "!")
        return found

    def events_for(self, topic: str) -> bool:
        """Joins and leaves of `topic` are announced."""
        namespaces = self.namespaces
        return self.events and self.enabled(topic) and (
            namespaces is None or namespaces.join_leave(topic))

    def pushes_all(self, topic: str) -> bool:
        """Every subscriber of `topic` gets its join/leave pushes, whatever its presence
        permission (a config file's ``force_push_join_leave``)."""
        namespaces = self.namespaces
        return namespaces is not None and namespaces.pushes_join_leave(topic)

    async def joined(self, topic: str, client: ClientInfo, publish: Publish, *,
                     announce: bool = True) -> None:
        """`client` subscribed to `topic`: record it and announce it (with whether it is
        its user's first connection there); not `announce`: announce neither this join
        nor the leave that ends it."""
        assert self.store is not None
        if not announce:
            self._quiet.add((topic, client.client_id))
        try:
            first = await self.store.add(topic, client)
        except PresenceUnavailable:
            log.warning("presence store unavailable: a join was not recorded")
            return
        if announce and self.events_for(topic):
            await publish(PRESENCE_PREFIX + topic, encode_event("join", client, edge=first))

    def left(self, topic: str, client_id: str, publish: Publish) -> None:
        """The client's subscription ended: remove it in the background and announce it
        (with whether it was its user's last connection there)."""
        if self.store is None:
            return
        task = asyncio.get_running_loop().create_task(self._leave(topic, client_id, publish))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _leave(self, topic: str, client_id: str, publish: Publish) -> None:
        assert self.store is not None
        quiet = self._quiet
        announce = not quiet or (topic, client_id) not in quiet
        if not announce:
            quiet.discard((topic, client_id))
        try:
            removed = await self.store.remove(topic, client_id)
            if removed is not None and announce and self.events_for(topic):
                event = encode_event("leave", ClientInfo(client_id, removed.user),
                                     edge=removed.last_of_user)
                await publish(PRESENCE_PREFIX + topic, event)
        except Exception:  # a leave must never take the connection's cleanup down
            log.warning("presence leave failed; the entry expires on its TTL", exc_info=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.store is not None:
            await self.store.close()


def encode_event(kind: str, client: ClientInfo, *, edge: bool = True) -> bytes:
    """`edge`: the user's first (join) or last (leave) connection in the topic."""
    event = {"k": kind, "c": client.client_id, "u": client.user, "i": client.info,
             "e": edge}
    if client.chan_info is not None:
        event["ci"] = client.chan_info
    return orjson.dumps(event)


def decode_event(payload: bytes) -> tuple[str, ClientInfo, bool] | None:
    """(kind, client, edge); an event without "e" (an older node) is an edge, as every
    event it sends was."""
    try:
        event: Any = orjson.loads(payload)
        client = ClientInfo(str(event["c"]), event["u"], event.get("i"), event.get("ci"))
        return (str(event["k"]), client,
                event.get("e", True) is not False)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
