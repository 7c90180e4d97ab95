"""The compact forms an idle session keeps its state in (docs/design.md "What an idle
subscribed connection holds"): its topics, and `Rare`, what few sessions ever use.

A session's topics are `Topics`: None (none), the topic's interned string (one: the
common case, where a `set` would cost 216 bytes), or a set of two or more. These pure
functions read and update one. `CompactState`, a base of `Session`, holds the topics
and the `Rare` object and shows them as the session's attributes and methods.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..auth import Principal
    from ..brokers.base import Publisher
    from .lifetime import TokenClock
    from .peer import Peer, TokenBucket
    from .replies import ByteBudget

Topics = str | set[str] | None


def count(topics: Topics) -> int:
    """How many topics `topics` holds."""
    return 0 if topics is None else 1 if isinstance(topics, str) else len(topics)


def snapshot(topics: Topics) -> frozenset[str]:
    """`topics` as a frozenset (a copy: later changes do not show in it)."""
    if topics is None:
        return frozenset()
    return frozenset((topics,)) if isinstance(topics, str) else frozenset(topics)


def added(topics: Topics, topic: str) -> Topics:
    """`topics` with `topic` (a set holding both is made at the second topic)."""
    if topics is None:
        return topic
    if isinstance(topics, str):
        return topics if topics == topic else {topics, topic}
    topics.add(topic)
    return topics


def discarded(topics: Topics, topic: str) -> Topics:
    """`topics` without `topic`; back to the string when one is left."""
    if isinstance(topics, str):
        return None if topics == topic else topics
    if topics is None:
        return None
    topics.discard(topic)
    return next(iter(topics)) if len(topics) == 1 else topics


class Rare:
    """A session's state that few connections ever use, apart so an idle subscriber
    carries one slot for all of it: the peer's address when the peer cannot tell it,
    the protocol error count, whether reading is paused, the publish byte budget, the
    history reply budget, the token's timers, the server-side subscribes in progress,
    the publisher attestation. The session makes it on first use."""

    __slots__ = ("address", "adopting", "clock", "errors", "paused", "publish_bytes",
                 "publisher", "reply_budget")

    def __init__(self) -> None:
        self.address: object = None
        self.errors = 0
        self.paused = False
        self.publish_bytes: TokenBucket | None = None
        self.reply_budget: ByteBudget | None = None
        self.clock: TokenClock | None = None
        self.adopting: set[asyncio.Future[None]] | None = None
        self.publisher: tuple[Principal, Publisher | None] | None = None


class CompactState:
    """`Session`'s topics and `Rare` state, read and changed through these (the session
    declares the rest of its slots)."""

    __slots__ = ("_rare", "_topics")

    _rare: Rare | None
    _topics: Topics
    peer: Peer

    @property
    def rare(self) -> Rare:
        """The state few connections use (`Rare`), made on first use."""
        rare = self._rare
        if rare is None:
            rare = self._rare = Rare()
        return rare

    @property
    def address(self) -> object:
        """The peer's address, for refusal log lines (asked of the peer when it can tell
        it, so an idle connection does not keep a copy)."""
        rare = self._rare
        if rare is not None and rare.address is not None:
            return rare.address
        return getattr(self.peer, "peer_address", None)

    @property
    def errors(self) -> int:
        """Counted protocol errors so far (`error`)."""
        return self._rare.errors if self._rare is not None else 0

    @property
    def reply_budget(self) -> ByteBudget | None:
        """History reply bytes per second (`hub.replies`); made by the first history reply."""
        return self._rare.reply_budget if self._rare is not None else None

    @reply_budget.setter
    def reply_budget(self, budget: ByteBudget | None) -> None:
        self.rare.reply_budget = budget

    # -- topics ----------------------------------------------------------------------
    @property
    def topics(self) -> frozenset[str]:
        """The topics this session is subscribed to (a snapshot)."""
        return snapshot(self._topics)

    @property
    def topic_count(self) -> int:
        return count(self._topics)

    def subscribed(self, topic: str) -> bool:
        """True when `topic` is one of this session's topics (inline: every publish asks)."""
        topics = self._topics
        if topics.__class__ is str:
            return topics == topic
        return topics is not None and topic in topics

    def add_topic(self, topic: str) -> None:
        """Record a subscription to `topic` (idempotent)."""
        self._topics = added(self._topics, topic)

    def discard_topic(self, topic: str) -> None:
        """Forget the subscription to `topic`, if any."""
        self._topics = discarded(self._topics, topic)
