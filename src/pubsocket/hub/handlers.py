"""What each pub/sub command does for one session (the session decides when it runs).

Each handler finishes inline and returns None, or returns the coroutine that finishes
it; replies go through `session.reply` / `session.error` so they keep command order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ..brokers.base import HistoryPage, Publication
from ..errors import BrokerError, ErrorCode
from ..protocol import Command, History, Publish, Subscribe, SubscribeResult, Unsubscribe

if TYPE_CHECKING:
    from .session import Session

_BROKER_DOWN = "the message broker is unavailable, retry later"


def run(session: Session, cmd: Command) -> Awaitable[None] | None:
    """Run a non-publish command: None when done, else the coroutine finishing it."""
    if isinstance(cmd, Subscribe):
        return subscribe(session, cmd)
    if isinstance(cmd, Unsubscribe):
        unsubscribe(session, cmd)
        return None
    if isinstance(cmd, History):
        return history(session, cmd)
    raise TypeError(f"not a barrier command: {type(cmd).__name__}")


# -- subscribe / unsubscribe ------------------------------------------------------------
def subscribe(session: Session, cmd: Subscribe) -> Awaitable[None] | None:
    hub, topic = session.hub, cmd.topic
    if topic in session.topics:
        # Subscribing again restarts the subscription, so a `since` is honoured afresh.
        session.topics.discard(topic)
        hub.unsubscribe_nowait(session.peer, topic)
    cap = session.settings.max_subscriptions
    if cap and len(session.topics) >= cap:
        session.error(ErrorCode.SUBSCRIPTION_LIMIT,
                      f"at most {cap} subscriptions per connection", cmd.id)
        return None
    session.topics.add(topic)
    result = hub.subscribe_nowait(session.peer, topic, session.codec, cmd.since)
    if isinstance(result, SubscribeResult):
        _subscribed(session, cmd, result)
        return None
    return _finish_subscribe(session, cmd, result)


async def _finish_subscribe(session: Session, cmd: Subscribe,
                            pending: Awaitable[SubscribeResult]) -> None:
    try:
        result = await pending
    except BrokerError:
        session.topics.discard(cmd.topic)
        session.error(ErrorCode.BROKER_UNAVAILABLE, _BROKER_DOWN, cmd.id)
        return
    # No await between here and the replay: the subscriber is live already, and its
    # reply and replay must reach the socket before any live delivery.
    _subscribed(session, cmd, result)


def _subscribed(session: Session, cmd: Subscribe, result: SubscribeResult) -> None:
    codec = session.codec
    session.reply(codec.subscribed(cmd, result))
    if not codec.replay_in_reply:
        for pub in result.replay:
            session.reply(codec.publication(cmd.topic, pub))


def unsubscribe(session: Session, cmd: Unsubscribe) -> None:
    if cmd.topic in session.topics:
        session.topics.discard(cmd.topic)
        session.hub.unsubscribe_nowait(session.peer, cmd.topic)
    session.reply(session.codec.done(cmd))


# -- publish ---------------------------------------------------------------------------
def publish(session: Session, cmd: Publish
            ) -> Publication | asyncio.Future[Publication] | Awaitable[Publication]:
    """The hub's `publish_payload_nowait` result (a publication, a queued future, or an
    awaitable the session must finish before the next command)."""
    return session.hub.publish_payload_nowait(cmd.topic, cmd.payload)


async def finish_publish(session: Session, cmd: Publish,
                         pending: Awaitable[Publication]) -> None:
    try:
        pub = await pending
    except BrokerError:
        session.error(ErrorCode.BROKER_UNAVAILABLE, _BROKER_DOWN, cmd.id)
        return
    session.reply(session.codec.published(cmd, pub))


# -- history ---------------------------------------------------------------------------
def history(session: Session, cmd: History) -> Awaitable[None] | None:
    hub = session.hub
    if cmd.since is None:
        return _latest(session, cmd)
    page = hub.history_nowait(cmd.topic, cmd.since.offset, cmd.limit)
    if page is None:
        return _finish_history(session, cmd, cmd.since.offset)
    _history_reply(session, cmd, page)
    return None


def _latest(session: Session, cmd: History) -> Awaitable[None] | None:
    """Without `since`: the newest `limit` publications (oldest first)."""
    hub = session.hub
    top = hub.history_nowait(cmd.topic, None, 0)
    if top is None:
        return _finish_latest(session, cmd)
    page = hub.history_nowait(cmd.topic, max(0, top.position.offset - cmd.limit), cmd.limit)
    if page is None:
        return _finish_history(session, cmd, max(0, top.position.offset - cmd.limit))
    _history_reply(session, cmd, page)
    return None


async def _finish_latest(session: Session, cmd: History) -> None:
    try:
        top = await session.hub.history(cmd.topic, None, 0)
    except BrokerError:
        session.error(ErrorCode.BROKER_UNAVAILABLE, _BROKER_DOWN, cmd.id)
        return
    await _finish_history(session, cmd, max(0, top.position.offset - cmd.limit))


async def _finish_history(session: Session, cmd: History, since: int) -> None:
    try:
        page = await session.hub.history(cmd.topic, since, cmd.limit)
    except BrokerError:
        session.error(ErrorCode.BROKER_UNAVAILABLE, _BROKER_DOWN, cmd.id)
        return
    _history_reply(session, cmd, page)


def _history_reply(session: Session, cmd: History, page: HistoryPage) -> None:
    since = cmd.since
    if since is not None and not continues(since.offset, since.epoch, page):
        session.error(ErrorCode.UNRECOVERABLE_POSITION,
                      "history no longer holds that position; read it without since",
                      cmd.id)
        return
    session.reply(session.codec.history(cmd, page))


def continues(offset: int, epoch: str, page: HistoryPage) -> bool:
    """True when `page` starts right after (`offset`, `epoch`) with nothing missing."""
    pubs, top = page.publications, page.position
    if top.epoch != epoch or offset > top.offset:
        return False
    return pubs[0].offset == offset + 1 if pubs else offset == top.offset
