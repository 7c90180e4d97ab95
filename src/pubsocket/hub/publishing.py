"""The publishing half of the hub: publish on every node, and history pages for clients.

`Publishing` is mixed into `Hub`; it needs the hub's settings, history rules, stats,
authorizer and broker. Every publish goes to the broker, which delivers it back to each
subscribed node's hub (`hub.delivery`), this one included: nothing here fans out. The
checks are the operations layer's (`hub.operations`), as for every other front door.
`publisher_of` says who a publish on behalf of a principal is attested as.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson

from ..auth import Action, Authorizer, Principal
from ..brokers.base import HistoryPage, HistoryPolicy, Position, Publication, Publisher
from ..config import Settings
from . import operations
from .policy import HistoryRules

if TYPE_CHECKING:
    from ..brokers import Broker
    from .stats import HubStats


def publisher_of(principal: Principal) -> Publisher | None:
    """The publisher a publish on behalf of `principal` carries: its client id, `sub` and
    ``info`` claim (JSON, copied to its exact size: history keeps it). None for the API
    key: it is the app's backend speaking as the server (like a server-side publish),
    and its fixed ``sub`` names no user. None for an anonymous connection too: there is
    no one to attest, only a random connection id (and every delivery would carry it:
    a Centrifuge push grows by half)."""
    if principal.is_api_key or principal.sub is None:
        return None
    info = b"" if principal.info is None else bytes(memoryview(orjson.dumps(principal.info)))
    return Publisher(principal.client_id, principal.sub, info)


class Publishing:
    """`publish` and `history` of `Hub` (see the module docstring)."""

    settings: Settings
    rules: HistoryRules
    stats: HubStats
    authorizer: Authorizer
    _broker: Broker | None
    _loop: asyncio.AbstractEventLoop | None

    @property
    def broker(self) -> Broker:
        raise NotImplementedError

    def history_policy(self, topic: str) -> HistoryPolicy:
        raise NotImplementedError

    async def publish(self, topic: str, data: Any, *,
                      principal: Principal | None = None) -> Publication:
        """Publish `data` (JSON-serializable) to `topic` on every node; return the
        publication with its position. With `principal`, on its behalf: `Forbidden`
        (`PermissionDenied`) unless the topic permissions allow it, and the publication
        carries `publisher_of(principal)`. Raises `InvalidTopic` / `BadRequest` (both
        ValueErrors) for an invalid topic or data, `BrokerUnavailable` when the broker
        could not take the message. The checks are the operations layer's
        (`hub.operations`), as for every other front door."""
        name = operations.check_topic(topic)
        await operations.authorize(self.authorizer, principal, Action.PUBLISH, name)
        payload = operations.encode(data)
        publisher = None if principal is None else publisher_of(principal)
        return await self.publish_payload(name, payload, publisher)

    async def publish_payload(self, topic: str, payload: bytes,
                              publisher: Publisher | None = None) -> Publication:
        """Publish an already JSON-encoded `payload` (the caller validated `topic`)."""
        result = self.publish_payload_nowait(topic, payload, publisher)
        return result if isinstance(result, Publication) else await result

    def publish_payload_nowait(self, topic: str, payload: bytes,
                               publisher: Publisher | None = None
                               ) -> Publication | asyncio.Future[Publication] | Awaitable[
                                   Publication]:
        """The publication when the broker took it inline; an `asyncio.Future` when the
        broker queued it in order (consecutive calls may be in flight together); any
        other awaitable must be awaited before the next publish to keep order.
        `publisher` (None: a server-side publish) travels with the publication."""
        self.stats.published += 1
        policy = self.rules.policy(topic)  # `history_policy`, one call fewer: hot path
        broker = self._broker or self.broker  # the property only until it is made
        result = broker.publish_nowait(topic, payload, policy, publisher)
        return broker.publish(topic, payload, policy, publisher) if result is None else result

    def publish_threadsafe(self, topic: str, data: Any) -> concurrent.futures.Future[Publication]:
        """`publish` from another thread; the returned future carries its outcome."""
        if self._loop is None:
            raise RuntimeError("the hub is not started")
        return asyncio.run_coroutine_threadsafe(self.publish(topic, data), self._loop)

    def reply_limit(self, limit: int) -> int:
        """`limit` within `Settings.history_reply_limit` (publications per history reply)."""
        cap = self.settings.history_reply_limit
        return min(limit, cap) if cap else limit

    def history_nowait(self, topic: str, since: int | None, limit: int) -> HistoryPage | None:
        """`history` when the broker answers inline, else None."""
        if not self.history_policy(topic).enabled:
            return HistoryPage([], Position(0, ""))
        return self.broker.history_nowait(topic, since, self.reply_limit(limit),
                                          self.settings.history_reply_bytes)

    async def history(self, topic: str, since: int | None, limit: int) -> HistoryPage:
        """Kept publications of `topic` after offset `since`, oldest first, with the
        topic's position: a page for a client, so at most `reply_limit(limit)`
        publications and `Settings.history_reply_bytes` bytes (a shorter page when the
        next publication would pass it; never empty when something is kept after
        `since`). Raises `BrokerUnavailable`."""
        page = self.history_nowait(topic, since, limit)
        return page if page is not None else await self.broker.history(
            topic, since, self.reply_limit(limit), self.settings.history_reply_bytes)


__all__ = ["Publishing", "publisher_of"]
