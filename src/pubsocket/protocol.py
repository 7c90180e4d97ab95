"""What every wire protocol shares: typed commands, the error codes, the topic rule.

A codec (`pubsocket.codecs`) turns a text frame into these commands and the hub's
results back into bytes; the session and the hub only ever see the types below. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from .brokers.base import Position, Publication
from .errors import ErrorCode

__all__ = ["ErrorCode"]  # re-exported: codecs and the session take it from here

SUBPROTOCOL: Final = "pubsocket.v1"
TOPIC_RE: Final = re.compile(r"[A-Za-z0-9_.:@/#\-]{1,255}")
MAX_ID_LENGTH: Final = 64
MAX_HISTORY_LIMIT: Final = 1000

CmdId = str | int


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """What the server may attach to a subscription it makes (`Hub.subscribe_user`;
    Centrifugo's server API ``subscribe`` options), protocol-neutral: `info` the
    subscriber's channel info in presence and its join (a JSON value, None: none),
    `data` JSON bytes its subscribe push carries (None: none; a codec without room for
    it leaves it out), `presence` False keeps it out of the topic's presence,
    `join_leave` False announces neither its join nor its leave, `push_join_leave`
    True/False gives it the topic's join/leave pushes without the presence permission
    or none (None: the permission decides). Each only narrows what the topic has."""

    info: Any = None
    data: bytes | None = None
    presence: bool | None = None
    join_leave: bool | None = None
    push_join_leave: bool | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Follow `topic`; with `since`, first replay what was missed after that position."""

    topic: str
    id: CmdId | None = None
    since: Position | None = None
    token: str | None = field(default=None, repr=False)  # a subscription token (Centrifuge)
    expires_at: float | None = None  # the verified subscription token's exp (set by the hub)
    server: bool = False  # made by the server (`Hub.subscribe_user`), not a client command
    # Centrifuge's reject-unrecovered flag: a `since` that cannot be recovered is an
    # `unrecoverable_position` error (no subscription) instead of ``recovered: false``.
    reject_unrecovered: bool = False
    options: SubscribeOptions | None = None  # a server-side subscribe's (`server`)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topic: str
    id: CmdId | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    """`payload` is the JSON encoding of the publisher's data."""

    topic: str
    payload: bytes
    id: CmdId | None = None


# One per publish command: stores through the slots' descriptors instead of the
# generated `object.__setattr__` calls, the instance as frozen as before (see
# `brokers.base.Publication`, which does the same and says why).
_set_topic = vars(Publish)["topic"].__set__
_set_payload = vars(Publish)["payload"].__set__
_set_id = vars(Publish)["id"].__set__


def _publish_init(self: Publish, topic: str, payload: bytes, id: CmdId | None = None) -> None:
    _set_topic(self, topic)
    _set_payload(self, payload)
    _set_id(self, id)


_publish_init.__qualname__ = "Publish.__init__"  # what a TypeError names
Publish.__init__ = _publish_init  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class History:
    """Read kept publications after `since` (all kept ones when None), at most `limit`."""

    topic: str
    id: CmdId | None = None
    since: Position | None = None
    limit: int = MAX_HISTORY_LIMIT
    reverse: bool = False  # newest first; with `since`: those before it (Centrifuge)
    oldest: bool = False  # without `since`: the oldest `limit` kept, not the newest (Centrifuge)


@dataclass(frozen=True, slots=True)
class Refresh:
    """Replace the connection's token with `token` (same user)."""

    token: str = field(repr=False)
    id: CmdId | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is subscribed to `topic` (`stats`: only how many connections and users)."""

    topic: str
    id: CmdId | None = None
    stats: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    """Authenticate in-band (Centrifuge): the first command of a handshake session.
    `token` is "" when the client sent none; `data` is the JSON of its connect data;
    `subs` are the server-side subscriptions a reconnecting client had, each with the
    position to recover after (None: from now)."""

    token: str = field(default="", repr=False)
    data: bytes | None = None
    name: str = ""
    version: str = ""
    id: CmdId | None = None
    subs: tuple[tuple[str, Position | None], ...] = ()


@dataclass(frozen=True, slots=True)
class SubRefresh:
    """Replace the subscription token of `topic` (Centrifuge)."""

    topic: str
    token: str = field(repr=False)
    id: CmdId | None = None


@dataclass(frozen=True, slots=True)
class Rpc:
    """Call the app's rpc hook with `method` and `payload` (JSON) (Centrifuge)."""

    method: str
    payload: bytes
    id: CmdId | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Ask for the server's application pings (pubsocket.v1; docs/protocol.md
    "Heartbeat"); answered with the interval."""

    id: CmdId | None = None


Command = (Subscribe | Unsubscribe | Publish | History | Refresh | Presence | Connect
           | SubRefresh | Rpc | Heartbeat)


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """What a subscription starts from: the position live delivery continues after,
    whether `since` was honoured, and the publications replayed to get there."""

    position: Position
    recovered: bool = False
    replay: tuple[Publication, ...] = ()  # oldest first


# Topics found valid lately: every publish checks its topic, and a node sees the same
# few over and over, so a set lookup stands in for the regex (~300 instructions, not
# ~2,200). Only exact `str`s that passed `TOPIC_RE` go in (at most 255 characters
# each); cleared when full, so it stays under ~400 KB whatever clients send.
VALID_TOPICS: Final[set[str]] = set()
_VALID_TOPICS_MAX: Final = 1024


def valid_topic(topic: object) -> bool:
    """True for a string of 1-255 characters from ``[A-Za-z0-9_.:@/#-]`` (``#``: a
    Centrifugo personal channel is ``#<user>``). A hot caller that holds a `str` may
    look in `VALID_TOPICS` first: what is in it is valid."""
    if not isinstance(topic, str) or TOPIC_RE.fullmatch(topic) is None:
        return False
    if topic.__class__ is str:  # a subclass could compare equal to what it is not
        if len(VALID_TOPICS) >= _VALID_TOPICS_MAX:
            VALID_TOPICS.clear()
        VALID_TOPICS.add(topic)
    return True


def valid_id(value: object) -> bool:
    """A command id: a string of at most 64 characters or an integer with |n| < 2^53."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH
