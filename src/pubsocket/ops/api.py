"""`Operations`: publish, history, presence, server-side subscriptions, channels, on
one hub, for every front door (our HTTP API, Centrifugo's server API).

Each method validates its input, authorizes the principal (None is the server itself,
as for Centrifugo's server API: no check; the API key is still asked of the app's
`authorize` hook, as on every route), bounds its work by the settings, and raises one
`OpError` subtype per failure (ops/errors.py maps them to each dialect's codes). Broker
and presence-store failures become `Unavailable`. No HTTP, socket or JSON-reply shape
lives here: the front doors shape replies.
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..auth import Action, Principal
from ..brokers.base import HistoryPage, Position, Publication
from ..errors import BrokerError, CloseCode
from ..hub import Hub
from ..hub.core import publisher_of
from ..hub.recovery import ANY_EPOCH
from ..hub.replies import continues
from ..presence.base import ClientInfo, Presence, PresenceUnavailable, Stats
from ..protocol import MAX_HISTORY_LIMIT, valid_topic
from .errors import (
    BadRequest,
    InvalidTopic,
    LimitExceeded,
    MissingData,
    NotAvailable,
    OpError,
    PermissionDenied,
    Unavailable,
    UnrecoverablePosition,
)

MAX_KEY_LENGTH = 256  # an idempotency key (bytes of UTF-8): it is stored per publish
MAX_NAME_LENGTH = 1024  # a user id, client id, reason or pattern
MISSING: Any = object()  # "no data field": a publish needs one (None is JSON null)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A history read: after `since` (None: from the oldest kept, or with `newest`, the
    newest `limit`), at most `limit` publications (0: the position only), `reverse`
    for newest first (before `since` when one is given)."""

    topic: object  # checked by `Operations.history`
    limit: int = 0
    since: Position | None = None
    reverse: bool = False
    newest: bool = False


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What `info` reports of this node."""

    uid: str
    name: str
    clients: int
    topics: int
    subscriptions: int
    users: int
    uptime: int


class Operations:
    """The operations layer over `hub` (see the module docstring)."""

    def __init__(self, hub: Hub, connections: Callable[[], int] = lambda: 0) -> None:
        """`connections()` counts this node's open connections (for `info`)."""
        self.hub = hub
        self.connections = connections
        self.started = time.monotonic()
        self.uid = str(uuid.uuid4())

    # -- checks ------------------------------------------------------------------------
    @staticmethod
    def topic(value: object) -> str:
        """`value` as a topic, or `InvalidTopic`."""
        if not isinstance(value, str) or not valid_topic(value):
            raise InvalidTopic()
        return value

    @staticmethod
    def name(value: object, field: str, *, optional: bool = False) -> str | None:
        """A user id, client id or reason: a string of at most `MAX_NAME_LENGTH`."""
        if value is None and optional:
            return None
        if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or (
                not value and not optional):
            raise BadRequest(f"{field} must be a string of 1-{MAX_NAME_LENGTH} characters")
        return value or None

    async def authorize(self, principal: Principal | None, action: Action, topic: str
                        ) -> None:
        """`PermissionDenied` unless the token's ``topics`` claim and the app's hook allow
        it (the hook is asked for the API key too); None is the server: no check."""
        if principal is None:
            return
        if not await self.hub.authorizer.allowed(principal, action, topic):
            raise PermissionDenied()

    # -- publish -----------------------------------------------------------------------
    async def publish(self, topic: object, data: Any = MISSING, *,
                      principal: Principal | None = None,
                      idempotency_key: object = None) -> Publication:
        """Publish `data` to `topic` (on behalf of `principal`: its permissions and its
        publisher); with `idempotency_key`, at most once per key and topic within
        `Settings.idempotency_ttl` (a repeat returns the first publication's position)."""
        name = self.topic(topic)
        if data is MISSING:
            raise MissingData()
        key = self._key(idempotency_key)
        await self.authorize(principal, Action.PUBLISH, name)
        try:
            payload = orjson.dumps(data)
        except TypeError:
            raise BadRequest("data is not valid JSON") from None
        return await self.publish_payload(name, payload, principal, key)

    async def publish_payload(self, topic: str, payload: bytes,
                              principal: Principal | None = None,
                              idempotency_key: str | None = None) -> Publication:
        """Publish a validated, authorized, JSON-encoded `payload`."""
        hub = self.hub
        publisher = None if principal is None else publisher_of(principal)
        try:
            if idempotency_key is None:
                result = hub.publish_payload_nowait(topic, payload, publisher)
                return result if isinstance(result, Publication) else await result
            hub.stats.published += 1
            return await hub.broker.publish(topic, payload, hub.history_policy(topic),
                                            publisher, idempotency_key=idempotency_key)
        except BrokerError:
            raise Unavailable() from None

    async def broadcast(self, topics: object, data: Any = MISSING, *,
                        principal: Principal | None = None, idempotency_key: object = None
                        ) -> list[Publication | OpError]:
        """Publish `data` to each of `topics` (at most `Settings.server_api_batch_max`);
        one outcome per topic, in order: a failure on one does not stop the others."""
        if not isinstance(topics, list) or not topics:
            raise BadRequest("channels must be a non-empty list")
        cap = self.hub.settings.server_api_batch_max
        if cap and len(topics) > cap:
            raise LimitExceeded(f"at most {cap} channels per broadcast")
        if data is MISSING:
            raise MissingData()
        key = self._key(idempotency_key)
        try:
            payload = orjson.dumps(data)
        except TypeError:
            raise BadRequest("data is not valid JSON") from None
        out: list[Publication | OpError] = []
        for topic in topics:
            try:
                name = self.topic(topic)
                await self.authorize(principal, Action.PUBLISH, name)
                out.append(await self.publish_payload(name, payload, principal, key))
            except OpError as exc:
                out.append(exc)
        return out

    @staticmethod
    def _key(value: object) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value.encode()) > MAX_KEY_LENGTH:
            raise BadRequest(f"idempotency_key must be a string of at most "
                             f"{MAX_KEY_LENGTH} bytes")
        return value

    # -- history -----------------------------------------------------------------------
    async def history(self, query: HistoryQuery, *, principal: Principal | None = None,
                      require_history: bool = False) -> HistoryPage:
        """A history page within `Settings.history_reply_limit`/`history_reply_bytes`.
        `UnrecoverablePosition` when `since` is no longer continuous with what history
        holds; with `require_history`, `NotAvailable` for a topic that keeps none."""
        topic = self.topic(query.topic)
        if query.limit < 0:
            raise BadRequest("limit must not be negative")
        await self.authorize(principal, Action.HISTORY, topic)
        hub = self.hub
        if require_history and not hub.history_policy(topic).enabled:
            raise NotAvailable("history is not kept for this topic")
        limit = hub.reply_limit(min(query.limit, MAX_HISTORY_LIMIT))
        try:
            page = await self._read(topic, limit, query)
        except BrokerError:
            raise Unavailable() from None
        since = query.since
        if since is not None and (page.position.epoch != since.epoch if query.reverse
                                  else not continues(since.offset, since.epoch, page)):
            raise UnrecoverablePosition()
        return page

    async def _read(self, topic: str, limit: int, query: HistoryQuery) -> HistoryPage:
        """The page `query` asks for (`limit` already capped), before the position check:
        the position only (limit 0); forward from `since` or from the oldest; or the
        newest `limit` before `since` (or the top), reversed when asked."""
        hub, since = self.hub, query.since
        if limit == 0:
            return await hub.history(topic, None, 0)
        if not query.reverse and (since is not None or not query.newest):
            return await hub.history(topic, 0 if since is None else since.offset, limit)
        top = since.offset if since is not None else (
            await hub.history(topic, None, 0)).position.offset + 1
        page = await hub.history(topic, max(0, top - 1 - limit), limit)
        pubs = [p for p in page.publications if p.offset < top]
        return HistoryPage(pubs[::-1] if query.reverse else pubs, page.position)

    async def history_remove(self, topic: object) -> None:
        """Drop what `topic` keeps; its position (epoch, top offset) stays."""
        name = self.topic(topic)
        try:
            await self.hub.broker.remove_history(name)
        except NotImplementedError:
            raise NotAvailable("this broker cannot remove history") from None
        except BrokerError:
            raise Unavailable() from None

    # -- presence ----------------------------------------------------------------------
    async def presence(self, topic: object, *, principal: Principal | None = None
                       ) -> Mapping[str, ClientInfo]:
        """Who is subscribed to `topic` (client id -> user, info), on every node."""
        store, name = await self._presence(topic, principal)
        try:
            return await store.get(name)
        except PresenceUnavailable:
            raise Unavailable() from None

    async def presence_stats(self, topic: object, *, principal: Principal | None = None
                             ) -> Stats:
        """How many connections and distinct users are subscribed to `topic`."""
        store, name = await self._presence(topic, principal)
        try:
            return await store.stats(name)
        except PresenceUnavailable:
            raise Unavailable() from None

    async def _presence(self, topic: object, principal: Principal | None) -> tuple[Presence, str]:
        name = self.topic(topic)
        await self.authorize(principal, Action.PRESENCE, name)
        presence = self.hub.presence
        if presence.store is None or not presence.enabled(name):
            raise NotAvailable("presence is not enabled for this topic")
        return presence.store, name

    # -- connections of a user, on every node ------------------------------------------
    async def subscribe_user(self, user: object, topic: object, client: object = None,
                             since: object = None) -> None:
        """Subscribe the user's connections to `topic`; `since` (``{offset, epoch}``,
        Centrifugo's ``recover_since``): with what was published after it."""
        await self._control(self.hub.subscribe_user, self.name(user, "user"),
                            self.topic(topic), client=self.name(client, "client", optional=True),
                            since=self.position(since))

    @staticmethod
    def position(value: object) -> Position | None:
        """``{offset, epoch}`` (a StreamPosition) as a `Position`; None for None. An
        empty epoch is any epoch (as in a Centrifuge client's recovery)."""
        if value is None:
            return None
        offset = value.get("offset", 0) if isinstance(value, dict) else None
        epoch = value.get("epoch", "") if isinstance(value, dict) else None
        if (isinstance(offset, bool) or not isinstance(offset, int) or offset < 0
                or not isinstance(epoch, str) or len(epoch) > MAX_NAME_LENGTH):
            raise BadRequest("a stream position is {offset: integer >= 0, epoch: string}")
        return Position(offset, epoch or ANY_EPOCH)

    async def unsubscribe_user(self, user: object, topic: object, client: object = None
                               ) -> None:
        await self._control(self.hub.unsubscribe_user, self.name(user, "user"),
                            self.topic(topic), client=self.name(client, "client", optional=True))

    async def disconnect_user(self, user: object, client: object = None,
                              code: object = None, reason: object = None) -> None:
        """Close the user's connections (4003 unless `code`, 3000-4999, is given)."""
        if code is None:
            code = int(CloseCode.DISCONNECTED)
        if not isinstance(code, int) or isinstance(code, bool) or not 3000 <= code <= 4999:
            raise BadRequest("disconnect code must be from 3000 to 4999")
        text = self.name(reason, "reason", optional=True) or "disconnected by the server"
        await self._control(self.hub.disconnect_user, self.name(user, "user"), text,
                            client=self.name(client, "client", optional=True), code=code)

    @staticmethod
    async def _control(command: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await command(*args, **kwargs)
        except BrokerError:
            raise Unavailable() from None

    # -- this node -----------------------------------------------------------------------
    def channels(self, pattern: object = None) -> dict[str, int]:
        """Topics with subscribers on this node -> their local subscriber count, those
        matching the glob `pattern` (``*``, ``?``, ``[...]``), at most
        `Settings.server_api_channels_max` (the busiest first)."""
        if pattern is not None and (not isinstance(pattern, str)
                                    or len(pattern) > MAX_NAME_LENGTH):
            raise BadRequest("pattern must be a string")
        hub = self.hub
        cap = hub.settings.server_api_channels_max or hub.topic_count
        if not pattern:
            return dict(hub.busiest_topics(cap))
        found = [(t, n) for t, n in hub.busiest_topics(hub.topic_count)
                 if fnmatch.fnmatchcase(t, pattern)]
        return dict(found[:cap])

    def info(self) -> NodeInfo:
        hub = self.hub
        uptime = int(time.monotonic() - self.started)
        return NodeInfo(self.uid, "pubsocket", self.connections(), hub.topic_count,
                        hub.subscription_count, hub.registry.users, uptime)
