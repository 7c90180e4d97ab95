"""The operations' core, shared by every front door: the socket commands
(`hub.handlers`, `hub.replies`), `Hub.publish` (in-process) and `ops.Operations` (our
HTTP API and Centrifugo's server API) call these same checks and reads.

Each check raises one `errors.OpError` subtype per failure, and each dialect maps the
type once: `SOCKET` here for the socket protocols (pubsocket.v1 sends the `ErrorCode`;
Centrifuge maps it to its numbers in `protocols.centrifuge.codes`), `ops.errors` for the
HTTP dialects. They live in the hub layer, below `ops`, so that the socket commands can
use them without the hub importing the layer above it (docs/design.md "Layers").

What stays outside: what only a connection has (the inbound rate, the publish byte
rate, the outbound backlog and history byte budget of `hub.replies`, the subscription
cap's count) and what only a front door has (parsing, reply shapes, the idempotency
key, batches). A socket publish, the hot path, asks `Authorizer.check` inline (the check
`permit` wraps) so an allowed publish pays no extra call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..auth import Action, Principal
from ..brokers.base import HistoryPage, Position, Publication
from ..errors import (
    BadRequest,
    BrokerError,
    ErrorCode,
    InvalidTopic,
    LimitExceeded,
    MethodNotFound,
    MissingData,
    NotAvailable,
    OpError,
    PermissionDenied,
    Unavailable,
    UnrecoverablePosition,
)
from ..presence.base import ClientInfo, Presence, PresenceUnavailable, Stats
from ..protocol import MAX_HISTORY_LIMIT, valid_topic
from .recovery import ANY_EPOCH

if TYPE_CHECKING:
    from ..auth import Authorizer
    from .core import Hub

# The socket protocols' error code of each failure (pubsocket.v1 sends it as is).
SOCKET: dict[type[OpError], ErrorCode] = {
    OpError: ErrorCode.BROKER_UNAVAILABLE,  # a server-side failure: temporary
    BadRequest: ErrorCode.BAD_FIELD,
    InvalidTopic: ErrorCode.INVALID_TOPIC,
    MissingData: ErrorCode.MISSING_DATA,
    PermissionDenied: ErrorCode.FORBIDDEN,
    NotAvailable: ErrorCode.PRESENCE_OFF,
    LimitExceeded: ErrorCode.SUBSCRIPTION_LIMIT,  # a socket's one count cap
    MethodNotFound: ErrorCode.BAD_ACTION,
    UnrecoverablePosition: ErrorCode.UNRECOVERABLE_POSITION,
    Unavailable: ErrorCode.BROKER_UNAVAILABLE,
}
MISSING: Any = object()  # "no data field": a publish needs one (None is JSON null)
_BEFORE_READS = 12  # reads a reverse page may take to fit its newest end in the byte cap


# -- validation and authorization -------------------------------------------------------
def check_topic(value: object) -> str:
    """`value` as a topic, or `InvalidTopic`."""
    if not isinstance(value, str) or not valid_topic(value):
        raise InvalidTopic()
    return value


def encode(data: Any) -> bytes:
    """A publish's data as the JSON payload kept and delivered; `MissingData` for no
    data field, `BadRequest` for what JSON cannot hold."""
    if data is MISSING:
        raise MissingData()
    try:
        return orjson.dumps(data)
    except TypeError:
        raise BadRequest("data is not valid JSON") from None


def permit(authorizer: Authorizer, principal: Principal | None, action: Action,
           topic: str, *, subscribed: bool = False) -> Awaitable[None] | None:
    """None when `principal` may do `action` on `topic` (the token's ``topics`` claim,
    then the app's hook: `Authorizer.check`); `PermissionDenied` when it may not; an
    awaitable that settles it when the hook is async. None as principal is the server
    itself: no check. `subscribed`: the connection holds `topic` (Centrifugo's "for
    subscriber" permissions)."""
    if principal is None:
        return None
    verdict = authorizer.check(principal, action, topic, subscribed=subscribed)
    if verdict is True:
        return None
    if verdict is False:
        raise PermissionDenied()
    return _settle(verdict)


async def _settle(verdict: Awaitable[bool]) -> None:
    if not await verdict:
        raise PermissionDenied()


async def authorize(authorizer: Authorizer, principal: Principal | None, action: Action,
                    topic: str) -> None:
    """`permit`, awaited."""
    pending = permit(authorizer, principal, action, topic)
    if pending is not None:
        await pending


# -- history ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A history read: after `since` (None: from the oldest kept, or with `newest`, the
    newest `limit`), at most `limit` publications (0: the position only), `reverse`
    for the newest `limit` before `since` (or the top)."""

    topic: object  # checked by `check_topic`
    limit: int = 0
    since: Position | None = None
    reverse: bool = False
    newest: bool = False


def history_kept(hub: Hub, topic: str, required: bool) -> None:
    """With `required` (Centrifugo's dialects), `NotAvailable` for a topic that keeps no
    history; without it, such a topic answers an empty page (pubsocket's)."""
    if required and not hub.history_policy(topic).enabled:
        raise NotAvailable("history is not kept for this topic")


def read_history(hub: Hub, topic: str, limit: int, since: Position | None = None, *,
                 reverse: bool = False, newest: bool = False
                 ) -> HistoryPage | Awaitable[HistoryPage]:
    """The page a history read of `topic` (already checked) asks for, oldest first:
    after `since` (None: from the oldest kept, or with `newest`, the newest `limit`), at
    most `limit` publications (0: the position only), with `reverse` the newest `limit`
    before `since` (or the top); within `MAX_HISTORY_LIMIT` and the hub's reply caps
    (`Hub.history`: publications and bytes per page; a page the byte cap cut short is
    still valid, the client reads on with ``since``). The page itself when the broker
    answers inline (memory, forward reads: a socket's history command then needs no
    task), else an awaitable of it. `UnrecoverablePosition` when `since` is not
    continuous with what history holds (`ANY_EPOCH` matches any epoch); `Unavailable`
    when the broker cannot read."""
    limit = hub.reply_limit(max(0, min(limit, MAX_HISTORY_LIMIT)))
    if not reverse:
        try:
            page = _forward_nowait(hub, topic, limit, since, newest)
        except BrokerError:
            raise Unavailable() from None
        if page is not None:
            return _continuous(since, page)
    return _read_awaited(hub, topic, limit, since, reverse, newest)


async def _read_awaited(hub: Hub, topic: str, limit: int, since: Position | None,
                        reverse: bool, newest: bool) -> HistoryPage:
    """`read_history` with awaited reads (`test_ops` checks it against the inline one)."""
    try:
        if reverse:
            return await _before(hub, topic, since, limit)
        if since is not None:
            page = await hub.history(topic, since.offset, limit)
        elif limit == 0 or not newest:
            page = await hub.history(topic, None, limit)
        else:
            top = (await hub.history(topic, None, 0)).position.offset
            page = await hub.history(topic, max(0, top - limit), limit)
    except BrokerError:
        raise Unavailable() from None
    return _continuous(since, page)


def _forward_nowait(hub: Hub, topic: str, limit: int, since: Position | None,
                    newest: bool) -> HistoryPage | None:
    """`_read_awaited`'s forward reads, inline (None: the broker cannot answer so)."""
    if since is not None:
        return hub.history_nowait(topic, since.offset, limit)
    if limit == 0 or not newest:
        return hub.history_nowait(topic, None, limit)
    top = hub.history_nowait(topic, None, 0)
    if top is None:
        return None
    return hub.history_nowait(topic, max(0, top.position.offset - limit), limit)


def _continuous(since: Position | None, page: HistoryPage) -> HistoryPage:
    if since is not None and not continues(since.offset, since.epoch, page):
        raise UnrecoverablePosition()
    return page


async def _before(hub: Hub, topic: str, since: Position | None, limit: int) -> HistoryPage:
    """Reverse (Centrifuge): the newest `limit` kept publications *before* `since` (in
    its epoch, else `UnrecoverablePosition`), or the newest of all without it. What
    history no longer keeps is simply not in the page. The broker reads forward, so when
    the byte cap cut a page short of its newest end the window shrinks to what fitted
    and is read again: a reverse page always ends at the newest publication asked for."""
    end = (since.offset if since is not None
           else (await hub.history(topic, None, 0)).position.offset + 1)
    older: list[Publication] = []
    page = None
    for attempt in range(_BEFORE_READS):
        page = await hub.history(topic, max(0, end - 1 - limit), limit)
        if since is not None and (since.epoch not in (page.position.epoch, ANY_EPOCH)
                                  or end > page.position.offset):
            raise UnrecoverablePosition()
        older = [p for p in page.publications if p.offset < end]
        if not older or older[-1].offset >= end - 1 or limit <= 1:
            break
        limit = 1 if attempt == _BEFORE_READS - 2 else max(1, min(len(older), limit // 2))
    assert page is not None  # the loop ran at least once
    return HistoryPage(older, page.position)


def continues(offset: int, epoch: str, page: HistoryPage) -> bool:
    """True when `page` starts right after (`offset`, `epoch`) with nothing missing
    (`ANY_EPOCH`: in whichever epoch the page is)."""
    pubs, top = page.publications, page.position
    if epoch not in (top.epoch, ANY_EPOCH) or offset > top.offset:
        return False
    return pubs[0].offset == offset + 1 if pubs else offset == top.offset


# -- presence --------------------------------------------------------------------------
def presence_store(hub: Hub, topic: str) -> Presence:
    """The store that tracks `topic`'s subscribers, or `NotAvailable`."""
    presence = hub.presence
    if presence.store is None or not presence.enabled(topic):
        raise NotAvailable("presence is not enabled for this topic")
    return presence.store


async def presence(store: Presence, topic: str) -> Mapping[str, ClientInfo]:
    """Who is subscribed to `topic`, on every node; `Unavailable` when the store is not."""
    try:
        return await store.get(topic)
    except PresenceUnavailable:
        raise Unavailable() from None


async def presence_stats(store: Presence, topic: str) -> Stats:
    """How many connections and users are subscribed to `topic`; `Unavailable` when
    the store is not."""
    try:
        return await store.stats(topic)
    except PresenceUnavailable:
        raise Unavailable() from None
