"""What each pub/sub command does for one session (the session decides when it runs).

Each handler finishes inline and returns None, or returns the coroutine that finishes
it; replies go through `session.reply` / `session.error` so they keep command order.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ..auth import Action, expiry_of
from ..brokers.base import Position, Publication
from ..errors import (
    BrokerError,
    ErrorCode,
    LimitExceeded,
    OpError,
    PermissionDenied,
    Unauthorized,
    Unavailable,
    UnrecoverablePosition,
)
from ..log import refusals
from ..presence.base import Presence as PresenceStore
from ..protocol import (
    CmdId,
    Command,
    Heartbeat,
    History,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    SubscribeOptions,
    SubscribeResult,
    Unsubscribe,
    valid_topic,
)
from . import operations, replies
from .joining import join_with
from .wire import server_side

if TYPE_CHECKING:
    from .session import Session


def run(session: Session, cmd: Command) -> Awaitable[None] | None:
    """Run a non-publish command: None when done, else the coroutine finishing it."""
    if isinstance(cmd, Subscribe):
        return checked(session, Action.SUBSCRIBE, cmd, _subscribe_checked)
    if isinstance(cmd, Unsubscribe):
        unsubscribe(session, cmd)
        return None
    if isinstance(cmd, History):
        return checked(session, Action.HISTORY, cmd, replies.history)
    if isinstance(cmd, Presence):
        return checked(session, Action.PRESENCE, cmd, presence)
    if isinstance(cmd, Refresh):
        return refresh(session, cmd)
    if isinstance(cmd, Heartbeat):
        # Idempotent: a connection is in the sweep once, so asking again never makes
        # the server ping it more than once per interval (hub/heartbeat.py).
        interval = session.hub.heartbeat.add(session)
        session.reply(session.codec.heartbeat_on(cmd, interval))
        return None
    raise TypeError(f"not a barrier command: {type(cmd).__name__}")


# -- permissions ---------------------------------------------------------------------
_C = TypeVar("_C", Subscribe, History, Presence)
Then = Callable[["Session", _C], Awaitable[None] | None]


def checked(session: Session, action: Action, cmd: _C, then: Then[_C]
            ) -> Awaitable[None] | None:
    """Run `then` if the principal may do `action` on the command's topic
    (`operations.permit`, the check every front door makes), else answer
    `PermissionDenied` (the hook's exception text, if any, stays in the server log); a
    topic the namespaces refuse outright gets their code (`Authorizer.refusal`)."""
    if refused(session, action, cmd.topic, cmd.id):
        return None
    try:
        pending = operations.permit(session.hub.authorizer, session.principal, action,
                                    cmd.topic, subscribed=session.subscribed(cmd.topic))
    except OpError as exc:
        session.fail(exc, cmd.id)
        return None
    return then(session, cmd) if pending is None else _after(session, pending, cmd, then)


async def _after(session: Session, permitted: Awaitable[None], cmd: _C, then: Then[_C]
                 ) -> None:
    try:
        await permitted
    except OpError as exc:
        session.fail(exc, cmd.id)
        return
    pending = then(session, cmd)
    if pending is not None:
        await pending


def _forbidden(session: Session, cmd_id: CmdId | None) -> None:
    session.fail(PermissionDenied(), cmd_id)


_REFUSALS = {ErrorCode.INVALID_TOPIC: "no namespace of the server's config has this topic",
             ErrorCode.PRESENCE_OFF: "presence is not enabled for this topic",
             ErrorCode.HISTORY_OFF: "history is not kept for this topic"}


def refused(session: Session, action: Action, topic: str, cmd_id: CmdId | None) -> bool:
    """True (and answered) when the namespaces refuse `action` on `topic` outright."""
    code = session.hub.authorizer.refusal(session.principal, action, topic)
    if code is None:
        return False
    session.error(code, _REFUSALS[code], cmd_id)
    return True


# -- subscribe / unsubscribe ------------------------------------------------------------
def _subscribe_checked(session: Session, cmd: Subscribe) -> Awaitable[None] | None:
    """A permitted subscribe: a `since` replays history only with the history
    permission (or a config namespace's ``force_recovery``); without it the subscribe
    goes on, answered ``recovered: false``."""
    authorizer = session.hub.authorizer
    if cmd.since is None or (authorizer.namespaces is not None
                             and authorizer.namespaces.recovers(cmd.topic)):
        return subscribe(session, cmd)
    verdict = authorizer.check(session.principal, Action.HISTORY, cmd.topic, subscribed=True)
    if isinstance(verdict, bool):
        return subscribe(session, cmd, replay=verdict)
    return _subscribe_after(session, cmd, verdict)


async def _subscribe_after(session: Session, cmd: Subscribe, verdict: Awaitable[bool]) -> None:
    pending = subscribe(session, cmd, replay=await verdict)
    if pending is not None:
        await pending


def subscribe(session: Session, cmd: Subscribe, *, replay: bool = True
              ) -> Awaitable[None] | None:
    """Subscribe; with `cmd.since` and `replay`, recover what was missed (once the
    connection's backlog is within `reply_backlog`, `replies.when_room`). Without
    `replay` a `since` is answered ``recovered: false`` and nothing is read."""
    if cmd.since is not None and replay:
        return replies.when_room(session, cmd.id, lambda: _subscribe(session, cmd, True))
    return _subscribe(session, cmd, replay)


def _subscribe(session: Session, cmd: Subscribe, replay: bool) -> Awaitable[None] | None:
    # Interned: every subscriber's `topics` and the hub's record share one string.
    hub, topic = session.hub, sys.intern(cmd.topic)
    if session.subscribed(topic):
        # Subscribing again restarts the subscription, so a `since` is honoured afresh.
        leave(session, topic)
    cap = session.settings.max_subscriptions
    if cap and session.topic_count >= cap:
        session.fail(LimitExceeded(f"at most {cap} subscriptions per connection"), cmd.id)
        return None
    session.add_topic(topic)
    since = cmd.since if replay else None
    # A server-side subscription is told of a loss its own way (`Codec.server_side`).
    wire = server_side(session.wire) if cmd.server else session.wire
    result = hub.subscribe_nowait(session.peer, topic, wire, since)
    if isinstance(result, SubscribeResult):
        if _rejected(session, cmd, result):
            return None
        _subscribed(session, cmd, result)
        if not hub.presence.enabled(topic):
            return None
        return join_with(session, topic, cmd.options)
    return _finish_subscribe(session, cmd, result)


async def _finish_subscribe(session: Session, cmd: Subscribe,
                            pending: Awaitable[SubscribeResult]) -> None:
    try:
        result = await pending
    except BrokerError:
        session.discard_topic(cmd.topic)
        session.fail(Unavailable(), cmd.id)
        return
    # No await between here and the replay: the subscriber is live already, and its
    # reply and replay must reach the socket before any live delivery.
    if _rejected(session, cmd, result):
        return
    _subscribed(session, cmd, result)
    if session.hub.presence.enabled(cmd.topic) and not session.closed:
        await join_with(session, cmd.topic, cmd.options)


def _rejected(session: Session, cmd: Subscribe, result: SubscribeResult) -> bool:
    """True when the subscribe asked to be refused rather than answered ``recovered:
    false`` (`Subscribe.reject_unrecovered`) and was not recovered: the subscription is
    undone (before any presence) and the client gets `unrecoverable_position`."""
    if not cmd.reject_unrecovered or cmd.since is None or result.recovered:
        return False
    session.discard_topic(cmd.topic)
    if session.hook is not None:
        session.hook.released(cmd.topic)
    session.hub.unsubscribe_nowait(session.peer, cmd.topic)
    session.fail(UnrecoverablePosition(
        "the position cannot be recovered; reload state and subscribe again"), cmd.id)
    return True


def _subscribed(session: Session, cmd: Subscribe, result: SubscribeResult) -> None:
    if result.replay:
        replies.charge(session, result.replay)
    codec = session.codec
    session.reply(codec.subscribed(cmd, result))
    if not codec.replay_in_reply:
        for pub in result.replay:
            session.reply(codec.publication(cmd.topic, pub))


def adopt(session: Session, topic: str, since: Position | None = None,
          options: SubscribeOptions | None = None) -> Awaitable[None] | None:
    """Subscribe `session` to `topic` on the server's word (no permission check) unless
    it is subscribed already or at `max_subscriptions`; the client hears its codec's
    server-side subscribe reply (with what was published after `since`, if given, and
    the `options`' data), and its presence follows the `options`."""
    cap = session.settings.max_subscriptions
    if (session.closed or session.subscribed(topic) or not valid_topic(topic)
            or (cap and session.topic_count >= cap)):  # at the cap: nothing to tell
        return None
    return subscribe(session, Subscribe(topic, since=since, server=True,
                                        options=options))


def unsubscribe(session: Session, cmd: Unsubscribe) -> None:
    if session.subscribed(cmd.topic):
        leave(session, cmd.topic)
    session.reply(session.codec.done(cmd))


def leave(session: Session, topic: str) -> None:
    """End the session's subscription to `topic` (presence follows in the background)."""
    hub = session.hub
    session.discard_topic(topic)
    if session.hook is not None:
        session.hook.released(topic)  # e.g. a subscription token's expiry clock stops
    hub.unsubscribe_nowait(session.peer, topic)
    if hub.presence.enabled(topic):
        hub.presence.left(topic, session.principal.client_id, hub.publish_internal)


# -- publish ---------------------------------------------------------------------------
# A member read off an enum class goes through `EnumType.__getattr__`'s slow attribute
# path (the interpreter cannot specialize it): once here, not once per publish.
_PUBLISH = Action.PUBLISH


def publish(session: Session, cmd: Publish
            ) -> Publication | asyncio.Future[Publication] | Awaitable[Publication] | None:
    """The hub's `publish_payload_nowait` result (a publication, a queued future, or an
    awaitable the session must finish before the next command); None when refused
    (already answered). An async authorize hook makes every publish an awaitable.

    The payload's bytes are charged to the connection first (`publish_rate` when its
    bucket is short): what a broker keeps is paid for before it is kept."""
    if not session.publish_bytes.take(len(cmd.payload)):
        refusals.warn("publish_rate", f"client {session.principal.client_id}")
        session.error(ErrorCode.PUBLISH_RATE, "publishing too many bytes per second, "
                      "retry later", cmd.id)
        return None
    hub = session.hub
    authorizer = hub.authorizer
    # Without namespaces nothing is refused outright (`Authorizer.refusal`): no call then.
    if authorizer.namespaces is not None and refused(session, _PUBLISH, cmd.topic, cmd.id):
        return None
    verdict = authorizer.check(session.principal, _PUBLISH, cmd.topic,
                               subscribed=session.subscribed(cmd.topic))
    if verdict is True:
        return hub.publish_payload_nowait(cmd.topic, cmd.payload, session.publisher)
    if verdict is False:
        _forbidden(session, cmd.id)
        return None
    return _checked_publish(session, cmd, verdict)


async def _checked_publish(session: Session, cmd: Publish, verdict: Awaitable[bool]
                           ) -> Publication:
    if not await verdict:
        raise PermissionDenied()
    return await session.hub.publish_payload(cmd.topic, cmd.payload, session.publisher)


async def finish_publish(session: Session, cmd: Publish,
                         pending: Awaitable[Publication]) -> None:
    try:
        pub = await pending
    except OpError as exc:
        session.fail(exc, cmd.id)
        return
    except BrokerError:
        session.fail(Unavailable(), cmd.id)
        return
    session.reply(session.codec.published(cmd, pub))


# -- presence --------------------------------------------------------------------------
def presence(session: Session, cmd: Presence) -> Awaitable[None] | None:
    """A permitted presence command: `NotAvailable` unless the topic's presence is
    tracked, else the store's answer (`operations.presence_store` and its reads)."""
    try:
        store = operations.presence_store(session.hub, cmd.topic)
    except OpError as exc:
        session.fail(exc, cmd.id)
        return None
    return _presence(session, cmd, store)


async def _presence(session: Session, cmd: Presence, store: PresenceStore) -> None:
    codec = session.codec
    try:
        if cmd.stats:
            reply = codec.presence_stats(cmd, await operations.presence_stats(store, cmd.topic))
        else:
            reply = codec.presence(cmd, await operations.presence(store, cmd.topic))
    except OpError as exc:
        session.fail(exc, cmd.id)
        return
    session.reply(reply)


# -- token refresh ---------------------------------------------------------------------
def refresh(session: Session, cmd: Refresh) -> Awaitable[None] | None:
    """Swap in a new token for the same user, re-check every subscription against it
    (dropping, with a notice, what is no longer allowed; not those held on a
    subscription token) and restart the expiry clock."""
    auth, old = session.authenticator, session.principal
    if auth is None:
        session.error(ErrorCode.INVALID_TOKEN, "this endpoint takes no tokens", cmd.id)
        return None
    try:
        new = auth.principal_of(cmd.token)
    except Unauthorized:
        session.error(ErrorCode.INVALID_TOKEN, "the token is invalid or expired", cmd.id)
        return None
    if new.sub != old.sub or new.is_api_key != old.is_api_key:
        session.error(ErrorCode.INVALID_TOKEN, "the token is for another user", cmd.id)
        return None
    session.principal = new.with_client_id(old.client_id)
    # A topic held on a subscription token was granted by that token, not by the
    # connection token's permissions: its own expiry and sub_refresh govern it.
    held = session.hook.held() if session.hook is not None else ()
    verdicts = {t: session.hub.authorizer.check(session.principal, Action.SUBSCRIBE, t)
                for t in sorted(session.topics) if t not in held}
    if all(isinstance(v, bool) for v in verdicts.values()):
        _refreshed(session, cmd, {t: bool(v) for t, v in verdicts.items()})
        return None
    return _settle_refresh(session, cmd, verdicts)


async def _settle_refresh(session: Session, cmd: Refresh,
                          verdicts: dict[str, bool | Awaitable[bool]]) -> None:
    settled = {t: v if isinstance(v, bool) else await v for t, v in verdicts.items()}
    _refreshed(session, cmd, settled)


def _refreshed(session: Session, cmd: Refresh, allowed: dict[str, bool]) -> None:
    hub = session.hub
    for topic, ok in allowed.items():
        if not ok:
            session.drop(topic, "forbidden")
        elif hub.presence.events_for(topic):
            # join/leave follow the new token's presence permission; an async hook's
            # answer is not awaited here, so the pushes stop (fail closed) until the
            # next subscribe.
            verdict = hub.presence.pushes_all(topic) or hub.authorizer.check(
                session.principal, Action.PRESENCE, topic, subscribed=True)
            if verdict is True:
                hub.watch(session.peer, topic, session.wire)
            else:
                hub.unwatch(session.peer, topic)
    expires_at = expiry_of(session.principal.claims)
    session.clock.reschedule(expires_at)
    session.reply(session.codec.refreshed(cmd, expires_at))
