"""`Router`: the client's sans-I/O core. It matches each incoming frame to what waits
for it: a reply to its command (by integer `id`), a delivery or notice to its
`Subscription`, tracking each subscription's position on the way.

Everything here is synchronous and runs in frame arrival order, so a subscribe ack
always sets the subscription's position before the next delivery is looked at (the
replay after a ``since`` ack, or the first live message after ``recovered: false``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .errors import ClientError, CommandError, Forbidden, Unsubscribed
from .subscription import Gap, Join, Leave, Message, Sender, Subscription

log = logging.getLogger("pubsocket.client")

REPLIES = frozenset({"ack", "error", "history", "presence", "presence_stats"})
Handler = Callable[[dict[str, Any]], None]
Reply = asyncio.Future[dict[str, Any]]


class Router:
    """Waiting commands (`pending`: id -> handler and the caller's future, None for
    the client's own resubscribes) and subscriptions (`subs`: topic -> one each)."""

    def __init__(self, on_expiring: Callable[[], None]) -> None:
        self.pending: dict[int, tuple[Handler, Reply | None]] = {}
        self.subs: dict[str, Subscription[Any]] = {}
        self._on_expiring = on_expiring

    def dispatch(self, frame: dict[str, Any]) -> None:
        """Handle one decoded frame (unknown types are ignored, as the protocol asks of
        clients; join/leave reach only subscriptions that asked for them)."""
        kind = frame.get("type")
        topic = frame.get("topic")
        sub = self.subs.get(topic) if isinstance(topic, str) else None
        if kind == "message":
            offset = _int(frame.get("offset"))
            if sub is not None and sub.confirmed:
                sub._deliver(Message(sub.topic, frame.get("data"), offset,
                                     Sender.parse(frame.get("from"))))
            return
        cid = frame.get("id")
        if kind in REPLIES and isinstance(cid, int) and cid in self.pending:
            handler, _future = self.pending.pop(cid)
            handler(frame)
        elif kind == "gap" and sub is not None:
            # The position moves past the gap only once the Gap is queued (not on Overflow).
            offset, epoch = _int(frame.get("offset")), _str(frame.get("epoch"))
            if sub._push(Gap(sub.topic, offset, epoch, "gap")):
                sub.offset, sub.epoch = offset, epoch
        elif kind in ("join", "leave") and sub is not None:
            # Live notices, not positions: queued even before the ack (our own join can
            # precede it), never deduplicated or recovered.
            cls = Join if kind == "join" else Leave
            user = frame.get("user")
            sub._push(cls(sub.topic, user if isinstance(user, str) else None, frame.get("info"),
                          str(frame.get("client", ""))))
        elif kind == "unsubscribed" and sub is not None:
            self.forget(sub)
            reason = str(frame.get("reason", ""))
            sub._finish(Forbidden(f"{sub.topic}: not allowed any more")
                        if reason == "forbidden" else Unsubscribed(sub.topic, reason))
        elif kind == "expiring":
            self._on_expiring()
        elif kind == "error":
            log.warning("the server reported %s", frame.get("code"))

    def subscribed(self, sub: Subscription[Any], frame: dict[str, Any], with_since: bool) -> None:
        """A subscribe ack: emit the `Gap` it implies, then take its position."""
        offset, epoch = _int(frame.get("offset")), _str(frame.get("epoch"))
        if epoch is None:  # a topic without history is acked with offset 0 and epoch ""
            offset = None
        # A topic without positions cannot recover anything: say so after a reconnect.
        lost = ((sub.confirmed and not with_since)
                or (with_since and frame.get("recovered") is False))
        if lost and not sub._push(Gap(sub.topic, offset, epoch, "not_recovered")):
            return  # Overflow: keep the position of the last event queued
        sub.offset, sub.epoch, sub.confirmed = offset, epoch, True

    def resubscribed(self, sub: Subscription[Any], with_since: bool) -> Handler:
        """The reply handler of a resubscribe: an error ends the subscription with it."""
        def handle(frame: dict[str, Any]) -> None:
            if frame.get("type") == "error":
                self.forget(sub)
                sub._finish(error_of(frame))
            else:
                self.subscribed(sub, frame, with_since)
        return handle

    def drop_pending(self, error: ClientError) -> None:
        """Fail every waiting command with `error` (their replies will never come)."""
        pending, self.pending = self.pending, {}
        for _handler, future in pending.values():
            if future is not None and not future.done():
                future.set_exception(error)

    def forget(self, sub: Subscription[Any]) -> None:
        """Stop routing to `sub` (if it is still the topic's subscription)."""
        if self.subs.get(sub.topic) is sub:
            del self.subs[sub.topic]


def error_of(frame: dict[str, Any]) -> ClientError:
    """The exception for an error reply."""
    code, message = str(frame.get("code", "")), str(frame.get("message", ""))
    return Forbidden(message) if code == "forbidden" else CommandError(code, message)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
