"""A new subscription's presence: recorded (and announced) in the topic's presence,
and the topic's join/leave pushes for a subscriber with the presence permission.

Shared by the commands (`handlers`) and the protocols' server-side subscriptions, which
may narrow it per subscription (Centrifuge's ``subs`` claim options).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..auth import Action
from ..protocol import SubscribeOptions

if TYPE_CHECKING:
    from .session import Session


def joined(session: Session, topic: str) -> Awaitable[None] | None:
    """A new live subscription to `topic`: presence and join/leave, when the topic has
    them (None: nothing to do)."""
    return join(session, topic) if session.hub.presence.enabled(topic) else None


async def join(session: Session, topic: str, *, push: bool | None = None,
                record: bool = True, chan_info: Any = None, announce: bool = True) -> None:
    """Record the new subscriber in presence (announcing it, `PresenceHooks.joined`);
    with the presence permission it also gets the topic's join/leave pushes.

    A protocol may narrow this per subscription (Centrifuge's ``subs`` claim options):
    `push` True/False forces the join/leave pushes on/off (None: the permission
    decides), `record` False keeps the client out of presence, `chan_info` is its
    channel info there, and `announce` False records it without a join (or leave)."""
    hub = session.hub
    if hub.presence.events_for(topic) and push is not False:
        verdict = push or hub.presence.pushes_all(topic) or hub.authorizer.check(
            session.principal, Action.PRESENCE, topic, subscribed=True)
        if not isinstance(verdict, bool):
            verdict = await verdict
        if verdict and session.subscribed(topic):
            hub.watch(session.peer, topic, session.wire)
    if not record or not session.subscribed(topic):
        return
    client = session.client if chan_info is None else session.client._replace(
        chan_info=chan_info)
    await hub.presence.joined(topic, client, hub.publish_internal, announce=announce)


def join_with(session: Session, topic: str, options: SubscribeOptions | None
              ) -> Awaitable[None]:
    """`join` as a server-side subscription's `options` narrow it (none: as is)."""
    if options is None:
        return join(session, topic)
    return join(session, topic, push=options.push_join_leave,
                record=options.presence is not False, chan_info=options.info,
                announce=options.join_leave is not False)


__all__ = ["join", "join_with", "joined"]
