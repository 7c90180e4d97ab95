"""`Operations`: publish, history, presence, server-side subscriptions, channels, on
one hub, for every HTTP front door (our HTTP API, Centrifugo's server API).

Each method validates its input, authorizes the principal (None is the server itself,
as for Centrifugo's server API: no check; the API key is still asked of the app's
`authorize` hook, as on every route), bounds its work by the settings, and raises one
`OpError` subtype per failure (ops/errors.py maps them to each dialect's codes). Broker
and presence-store failures become `Unavailable`. No HTTP, socket or JSON-reply shape
lives here: the front doors shape replies.

The per-topic checks and reads (topic, permission, data, history, presence) are
`hub.operations`, which the socket commands call too: one place for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..auth import Action, Principal
from ..brokers.base import HistoryPage, Position, Publication
from ..errors import (
    BadRequest,
    BrokerError,
    CloseCode,
    LimitExceeded,
    MissingData,
    NotAvailable,
    OpError,
    Unavailable,
)
from ..hub import Hub, operations
from ..hub.cluster import ChannelsSurvey, NodeInfo, SurveyRefused
from ..hub.core import publisher_of
from ..hub.operations import MISSING, HistoryQuery
from ..hub.recovery import ANY_EPOCH
from ..presence.base import ClientInfo, Stats
from ..protocol import SubscribeOptions

MAX_KEY_LENGTH = 256  # an idempotency key (bytes of UTF-8): it is stored per publish
MAX_NAME_LENGTH = 1024  # a user id, client id, reason or pattern
__all__ = ["MISSING", "ChannelsSurvey", "HistoryQuery", "NodeInfo", "Operations"]


class Operations:
    """The operations layer over `hub` (see the module docstring)."""

    def __init__(self, hub: Hub, connections: Callable[[], int] = lambda: 0) -> None:
        """`connections()` counts this node's open connections (for `info`, on every
        node: `hub.cluster` publishes it)."""
        self.hub = hub
        self.connections = connections
        hub.cluster.connections = connections

    # -- checks (hub.operations: the socket commands make the same) --------------------
    @staticmethod
    def topic(value: object) -> str:
        """`value` as a topic, or `InvalidTopic`."""
        return operations.check_topic(value)

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
        await operations.authorize(self.hub.authorizer, principal, action, topic)

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
        return await self.publish_payload(name, operations.encode(data), principal, key)

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
        payload = operations.encode(data)
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
        """A history page within `Settings.history_reply_limit`/`history_reply_bytes`
        (`operations.read_history`, the socket's read too), newest first when
        `query.reverse`. `UnrecoverablePosition` when `since` is no longer continuous
        with what history holds; with `require_history`, `NotAvailable` for a topic
        that keeps none."""
        topic = self.topic(query.topic)
        if query.limit < 0:
            raise BadRequest("limit must not be negative")
        await self.authorize(principal, Action.HISTORY, topic)
        operations.history_kept(self.hub, topic, require_history)
        page = operations.read_history(self.hub, topic, query.limit, query.since,
                                       reverse=query.reverse, newest=query.newest)
        if not isinstance(page, HistoryPage):
            page = await page
        if query.reverse:
            return HistoryPage(page.publications[::-1], page.position)
        return page

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
        name = self.topic(topic)
        await self.authorize(principal, Action.PRESENCE, name)
        return await operations.presence(operations.presence_store(self.hub, name), name)

    async def presence_stats(self, topic: object, *, principal: Principal | None = None
                             ) -> Stats:
        """How many connections and distinct users are subscribed to `topic`."""
        name = self.topic(topic)
        await self.authorize(principal, Action.PRESENCE, name)
        return await operations.presence_stats(operations.presence_store(self.hub, name),
                                               name)

    # -- connections of a user, on every node ------------------------------------------
    async def subscribe_user(self, user: object, topic: object, client: object = None,
                             since: object = None, options: SubscribeOptions | None = None
                             ) -> None:
        """Subscribe the user's connections to `topic`; `since` (``{offset, epoch}``,
        Centrifugo's ``recover_since``): with what was published after it; `options`:
        its data, channel info and presence overrides (`SubscribeOptions`), whose
        info and data together are at most `Settings.connect_message_size` bytes (what
        a connection token's ``subs`` claim may give all its channels), else
        `BadRequest`: every node receives them and keeps the info in presence."""
        name, where = self.name(user, "user"), self.topic(topic)
        who, position = self.name(client, "client", optional=True), self.position(since)
        if options is not None:
            self._bound(options)
        await self._control(self.hub.subscribe_user, name, where, client=who,
                            since=position, options=options)

    def _bound(self, options: SubscribeOptions) -> None:
        cap = self.hub.settings.connect_message_size
        size = len(options.data or b"")
        if options.info is not None:
            size += len(orjson.dumps(options.info))
        if cap and size > cap:
            raise BadRequest(f"info and data together are over {cap} bytes")

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

    # -- the cluster (hub/cluster.py) ---------------------------------------------------
    async def survey_channels(self, pattern: object = None) -> ChannelsSurvey:
        """Topics with subscribers on every node -> their subscriber count, those matching
        the glob `pattern` (``*``, ``?``, ``[...]``), at most
        `Settings.server_api_channels_max` (the busiest first), with how many nodes
        answered and whether all did in time (`Cluster.channels`). `LimitExceeded` past
        the survey bounds, `Unavailable` when the survey cannot be sent."""
        if pattern is not None and (not isinstance(pattern, str)
                                    or len(pattern) > MAX_NAME_LENGTH):
            raise BadRequest("pattern must be a string")
        try:
            return await self.hub.cluster.channels(
                pattern or None, self.hub.settings.server_api_channels_max)
        except SurveyRefused:
            raise LimitExceeded("too many channels surveys now; retry later") from None
        except BrokerError:
            raise Unavailable() from None

    async def channels(self, pattern: object = None) -> dict[str, int]:
        """`survey_channels`' channels when every node answered in time, else
        `Unavailable` (as Centrifugo, whose survey fails when a node does not answer)."""
        survey = await self.survey_channels(pattern)
        if not survey.complete:
            raise Unavailable()
        return survey.channels

    def nodes(self) -> list[NodeInfo]:
        """Every running node (this one first): the registry of `hub.cluster`."""
        return self.hub.cluster.nodes()

    def info(self) -> NodeInfo:
        """This node's counters, read now."""
        return self.hub.cluster.describe()
