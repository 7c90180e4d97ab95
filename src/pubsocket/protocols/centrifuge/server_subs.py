"""Server-side subscriptions made at connect, with recovery (Centrifuge).

A Centrifuge connect may subscribe the connection on the server's word, as Centrifugo's
``OnClientConnecting`` does (centrifugo ``internal/client/handler.go``), to:

* the personal channel ``#<user>`` (``<namespace>:#<user>``) when
  `Settings.personal_channel` is on and the connection has a user;
* every channel of the connection token's ``subs`` claim (channel -> options, parsed
  and bounded once in `sub_options`: ``data`` goes in the channel's connect reply
  entry, ``info`` is the client's channel info in its presence and join, ``override``
  narrows the channel's presence and join/leave for this client in `join_all`);
* the channels of the connect command's ``subs`` the principal may subscribe to anyway
  (a reconnecting SDK names the server-side subscriptions it had; one no longer granted
  by the token is kept only if a client-side subscribe would be allowed).

Each is subscribed without a permission check; a connect ``subs`` entry with ``recover``
recovers it through the hub's recovery merge (`hub.recovery`): all of what was missed
or ``recovered: false``. The connect reply's ``subs`` map carries every result and its
recovered publications (centrifuge ``client.go`` ``connectCmd``), so the SDK emits its
server-side ``subscribed`` and ``publication`` events (centrifuge-python
``_process_server_subs``, centrifuge-js ``_processServerSubs``); later publications
come as pushes with the channel.

Bounded like client-side subscribes: more channels than `Settings.max_subscriptions`
closes the connection with 3505 "channel limit" (what centrifuge's ``connectCmd`` does),
and the recovered publications of all of them together stay within one reply's caps
(`history_reply_limit` publications, `history_reply_bytes` bytes): a channel whose
replay would go past them is answered ``recovered: false`` (never a partial replay), and
one after them is not read at all. Their bytes are charged to the connection's history
byte budget like any replay (`hub.replies.charge`).

Ordering: the subscriptions are made for a `Cork` standing in for the connection, which
keeps what the hub delivers meanwhile. Once all are made, with no await in between, the
connect reply is sent, then what the cork kept, then the connection takes each
subscription over from the cork: no live publication overtakes the reply that
positions it, and none is lost or sent twice (centrifuge buffers the same way,
``pubSubSync.StartBuffering`` until ``unlockServerSideSubscriptions``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from ...auth import Action
from ...brokers.base import Position, size_of
from ...hub import joining, replies
from ...hub.wire import server_side
from ...protocol import Connect, Subscribe, SubscribeOptions, SubscribeResult, valid_topic
from .codec import ServerSubs
from .sub_options import BadOptions
from .sub_options import parse as parse_options

if TYPE_CHECKING:
    from ...hub.session import Session

log = logging.getLogger("pubsocket.hub")

MAX_CORKED: Final = 1000  # deliveries a cork keeps (then: reconnect and recover)
MAX_CORKED_BYTES: Final = 1024 * 1024


class ChannelLimit(Exception):
    """More server-side subscriptions than `Settings.max_subscriptions` (close 3505)."""


class BadChannel(Exception):
    """A channel the server named (personal channel, ``subs`` claim) is not a valid
    topic: the connect is refused with 102 "unknown channel", as Centrifugo refuses an
    unknown personal channel namespace."""


class Cork:
    """A stand-in subscriber that keeps deliveries, in order, until `release` (module
    docstring). More than `MAX_CORKED` frames or `MAX_CORKED_BYTES` bytes: it keeps none
    and `overflowed` says so; the connection then reconnects and recovers."""

    __slots__ = ("frames", "overflowed", "session", "size")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.frames: list[bytes] = []
        self.size = 0
        self.overflowed = False

    def deliver(self, frame: bytes) -> None:
        if self.overflowed:
            return
        self.frames.append(frame)
        self.size += len(frame)
        if len(self.frames) > MAX_CORKED or self.size > MAX_CORKED_BYTES:
            self.overflowed = True
            self.frames = []

    def close_nowait(self, code: int, reason: str = "") -> None:
        self.session.peer.close_nowait(code, reason)


def personal_channel(session: Session) -> str | None:
    """The connection's personal channel, when `Settings.personal_channel` is on."""
    settings, user = session.settings, session.principal.user
    if not settings.personal_channel or not user:
        return None
    ns = settings.personal_channel_namespace
    return f"{ns}:#{user}" if ns else f"#{user}"


async def wanted(session: Session, cmd: Connect
                 ) -> tuple[dict[str, Position | None], dict[str, SubscribeOptions]]:
    """The server-side subscriptions of this connect, each with the position to recover
    after (None: from now), and the options of those the ``subs`` claim gives any.
    Raises `BadChannel` (a bad option too) or `ChannelLimit`."""
    granted: list[str] = []
    personal = personal_channel(session)
    if personal is not None:
        granted.append(personal)
    claim = session.principal.claims.get("subs")
    options: dict[str, SubscribeOptions] = {}
    if isinstance(claim, Mapping):
        granted.extend(str(t) for t in claim)
    elif claim is not None:
        raise BadChannel("the token's subs claim is not an object")
    cap = session.settings.max_subscriptions
    if cap and len(granted) > cap:
        raise ChannelLimit()
    if not all(valid_topic(t) for t in granted):
        raise BadChannel("a server-side channel is not a valid channel name")
    if claim:
        try:
            options = parse_options(claim, session.settings.connect_message_size)
        except BadOptions as exc:
            raise BadChannel(f"the token's subs claim: {exc}") from None
    asked = dict(cmd.subs)
    out = {topic: asked.get(topic) for topic in granted}
    authorizer = session.hub.authorizer
    for topic, since in asked.items():
        if topic in out:
            continue
        # Only what a client-side subscribe would be allowed (centrifugo handler.go
        # "subscribe only to channels client has permission to").
        if await authorizer.allowed(session.principal, Action.SUBSCRIBE, topic):
            out[topic] = since
        if cap and len(out) > cap:
            raise ChannelLimit()
    return out, options


async def subscribe(session: Session, channels: Mapping[str, Position | None],
                    options: Mapping[str, SubscribeOptions] | None = None
                    ) -> tuple[dict[str, tuple[Subscribe, SubscribeResult]], Cork]:
    """Subscribe a `Cork` of `session` to `channels` (recovering those with a
    position, within the replay caps); each command carries its channel's `options`
    (its ``data`` for the connect reply, its presence for `join_all`). Raises
    `BrokerError`; on any failure (or cancellation) the cork is unsubscribed from
    everything."""
    hub, settings = session.hub, session.settings
    cork = Cork(session)
    wire = server_side(session.wire)
    count_left = settings.history_reply_limit or -1  # -1: no cap
    bytes_left = settings.history_reply_bytes or -1
    done: dict[str, tuple[Subscribe, SubscribeResult]] = {}
    try:
        for topic, since in channels.items():
            room = count_left != 0 and bytes_left != 0
            pending = hub.subscribe_nowait(cork, topic, wire, since if room else None)
            result = pending if isinstance(pending, SubscribeResult) else await pending
            replay = result.replay
            if since is not None and not room:
                result = SubscribeResult(result.position, False)
            elif replay:
                count, size = len(replay), sum(map(size_of, replay))
                if (0 <= count_left < count) or (0 <= bytes_left < size):
                    last = replay[-1]  # what live delivery continues after
                    result = SubscribeResult(Position(last.offset, last.epoch), False)
                    count_left = bytes_left = 0  # the rest are not read either
                else:
                    count_left -= count if count_left > 0 else 0
                    bytes_left -= size if bytes_left > 0 else 0
            done[topic] = (Subscribe(topic, since=since, server=True,
                                     options=options.get(topic) if options else None),
                           result)
    except BaseException:
        for topic in channels:
            hub.unsubscribe_nowait(cork, topic)
        raise
    return done, cork


def take_over(session: Session, subs: ServerSubs, cork: Cork) -> bool:
    """After the connect reply: send what `cork` kept, then move every subscription
    from it to the connection (no await: nothing is delivered in between). False when
    the cork overflowed or a topic could not be taken over inline: the connection must
    reconnect and recover (the caller closes it with 3010)."""
    hub = session.hub
    wire = server_side(session.wire)
    ok = not cork.overflowed
    for frame in cork.frames:
        session.peer.deliver(frame)
    cork.frames = []
    for topic, (_, result) in subs.items():
        # The cork keeps the topic live and positioned, so joining it is inline.
        joined = hub.subscribe_nowait(session.peer, topic, wire)
        if isinstance(joined, SubscribeResult):
            session.add_topic(topic)
        else:  # never expected: give the awaitable up and let recovery fill in
            getattr(joined, "close", lambda: None)()
            ok = False
        hub.unsubscribe_nowait(cork, topic)
        if result.replay:
            replies.charge(session, result.replay)
    return ok


async def join_all(session: Session, subs: ServerSubs) -> None:
    """Presence and join/leave for the new subscriptions (as a client-side subscribe),
    as each one's options (the ``subs`` claim's, `sub_options`) narrow them."""
    for topic, (cmd, _) in subs.items():
        if (not session.closed and session.subscribed(topic)
                and session.hub.presence.enabled(topic)):
            await joining.join_with(session, topic, cmd.options)
