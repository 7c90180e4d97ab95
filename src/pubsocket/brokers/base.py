"""The broker interface: topics, positions, history and bytes; one delivery stream.

A broker carries encoded payloads between hub nodes and keeps each topic's recent
history. The hub calls `subscribe` for a topic when its first local subscriber arrives
and `unsubscribe` when the last one leaves, so a node only receives topics it has
subscribers for.

Contracts every broker meets (``tests/brokers/test_contract.py`` runs them on each):

* **Positions.** A publish to a topic whose `HistoryPolicy` keeps history gets the next
  offset of that topic (1, 2, 3, ... with no gap and no repeat, across every node: the
  engine assigns it) and the topic's current epoch. The epoch is a short random string
  that changes whenever the topic's history is lost (engine restart without
  persistence, keys evicted or flushed, the memory broker's byte cap dropping the
  topic); offsets start again at 1 with a new epoch. A publish to a topic whose policy
  keeps no history gets offset 0 and epoch "" (at-most-once, no position).
* **Delivery.** Every publication to a subscribed topic reaches ``deliver(topic, pub)``
  on every subscribed node exactly once while the node's link to the engine holds, in
  offset order (in publish order per publisher for offset-0 publications).
* **Resync.** When the link to the engine broke and came back (publications may have
  been missed meanwhile), the broker calls ``resync()`` once the topics are subscribed
  again; the hub then reads history to fill what it missed.
* **History.** ``history(topic, since, limit)`` returns publications with
  ``offset > since`` (all kept ones when `since` is None), oldest first, at most `limit`
  (0: none, only the position), and the topic's current `Position`. Asking creates the
  topic's epoch if it has none, so a position handed to a client stays valid for the
  next publish. What history keeps is bounded by the topic's policy: `size`
  publications, dropped `ttl` seconds after the topic's last publish; the position
  itself (epoch and top offset) lives the broker's `meta_ttl` (a constructor argument,
  default one day) after the topic's last publish or history read, so a client that
  comes back after the history expired still learns whether it missed anything.
* **Bounded reads.** ``history(..., max_bytes=n)`` (n > 0) stops before the publication
  that would take the page's `size_of` sum past `n`, but a non-empty page always holds
  its first publication (a reader can always make progress). The engine stops there
  too: the bytes a read moves are bounded before they are read, not trimmed after.
* **Publisher.** ``publish(..., publisher=p)`` keeps `p` with the publication: the
  delivered `Publication` and the ones `history` returns later carry an equal
  `Publisher` (None when published without one), on every node.
* **Idempotency.** ``publish(..., idempotency_key=k)``: when a publish to the same topic
  with the same key succeeded within the broker's `idempotency_ttl` (a constructor
  argument, default 300 s), nothing is published, delivered or kept again, and the
  first publication's offset and epoch are returned (offset 0 and epoch "" on a topic
  without history). Keys are scoped to the topic. The outbox relay re-publishes a row
  with the same key after a crash, so a subscriber sees it once.
* **Failure.** ``publish`` raises `BrokerUnavailable` when the message could not be
  handed to the engine (never a silent drop), `BrokerError` when the engine refused it;
  ``history`` raises the same.

The ``*_nowait`` methods are inline fast paths for brokers that need no I/O (the memory
broker): they return the result, or None when the caller must await the coroutine.
`publish_nowait` may instead return a future that is already queued in order: a broker
that pipelines (Redis) enqueues at call time, so consecutive calls keep their order
without the caller awaiting each one. `publish_counted_nowait` is the same for a publish
without history that also says how many nodes the engine handed it to (the command
relay's, hub/relay.py: a routed command nobody received is reported, not lost).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where a topic's stream stands: the offset of its latest publication (0: none yet)
    within `epoch`."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publisher:
    """Who published: the connection's `client` id, its `user` (the token's ``sub``,
    None when anonymous) and `info`, the JSON encoding of the token's ``info`` claim
    (b"" when it has none). Attested by the server, never taken from the client's data."""

    client: str
    user: str | None
    info: bytes = b""


class Publication:
    """One published message as the broker carries and keeps it.

    `payload` is the JSON encoding of the publisher's data. `offset`/`epoch` are 0/""
    for topics that keep no history. `publisher` is None for server-side publishes.

    A value, as the frozen dataclass it was: assigning or deleting a field raises
    `dataclasses.FrozenInstanceError`; equal when of this class with equal fields (in
    field order), hashed by them; `copy` and `pickle` rebuild it through `__init__`.
    Written out (not a dataclass) because one is made per publish and per history entry
    read back: see `__init__`.
    """

    __slots__ = ("epoch", "offset", "payload", "publisher")
    __match_args__ = ("offset", "epoch", "payload", "publisher")

    offset: int
    epoch: str
    payload: bytes
    publisher: Publisher | None

    def __init__(self, offset: int, epoch: str, payload: bytes,
                 publisher: Publisher | None = None) -> None:
        # Hot path. A frozen dataclass's `__init__` stores each field through
        # `object.__setattr__`, whose call allocates a bound wrapper (~6,900
        # instructions per object under callgrind); the slots' own descriptors do the
        # same stores (`__setattr__` below still refuses) at ~4,300 (docs/design.md
        # "Cost model: one delivery").
        _set_offset(self, offset)
        _set_epoch(self, epoch)
        _set_payload(self, payload)
        _set_publisher(self, publisher)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Publication) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.offset, self.epoch, self.payload, self.publisher) == (
            other.offset, other.epoch, other.payload, other.publisher)

    def __hash__(self) -> int:
        return hash((self.offset, self.epoch, self.payload, self.publisher))

    def __repr__(self) -> str:
        return (f"{self.__class__.__qualname__}(offset={self.offset!r}, "
                f"epoch={self.epoch!r}, payload={self.payload!r}, "
                f"publisher={self.publisher!r})")

    def __reduce__(self) -> tuple[type[Publication], tuple[int, str, bytes, Publisher | None]]:
        return (self.__class__, (self.offset, self.epoch, self.payload, self.publisher))


# The stores `Publication.__init__` makes: its slots' descriptors (made with the class).
_set_offset = vars(Publication)["offset"].__set__
_set_epoch = vars(Publication)["epoch"].__set__
_set_payload = vars(Publication)["payload"].__set__
_set_publisher = vars(Publication)["publisher"].__set__


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """What a broker keeps of one topic. ``size == 0`` keeps nothing and assigns no
    offsets (at-most-once delivery)."""

    size: int = 100
    ttl: float = 120.0

    @property
    def enabled(self) -> bool:
        return self.size > 0


NO_HISTORY = HistoryPolicy(size=0, ttl=0.0)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A history read: `publications` (oldest first) and the topic's `position` now."""

    publications: list[Publication]
    position: Position


IDEMPOTENCY_TTL = 300.0  # seconds a publish's idempotency key is remembered by default
def size_of(pub: Publication) -> int:
    """What a publication counts towards a read's `max_bytes`: its payload and its
    publisher's ``info`` (the Redis broker counts the stored publisher JSON, a few bytes
    more)."""
    return len(pub.payload) if pub.publisher is None else len(pub.payload) + len(
        pub.publisher.info)


DeliverFn = Callable[[str, Publication], None]
ResyncFn = Callable[[], None]
PublishResult = Publication | asyncio.Future[Publication] | None
CountResult = int | asyncio.Future[int] | None


class Broker(ABC):
    """Carries publications to every subscribed node (this one included) and keeps
    each topic's history."""

    @abstractmethod
    async def start(self, deliver: DeliverFn, resync: ResyncFn | None = None) -> None:
        """Connect and begin calling `deliver` for subscribed topics."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering and release connections. Idempotent."""

    @abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start receiving `topic`. Raises `BrokerUnavailable` if it cannot be confirmed."""

    @abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving `topic` (best effort while the engine is away)."""

    @abstractmethod
    async def publish(self, topic: str, payload: bytes, policy: HistoryPolicy,
                      publisher: Publisher | None = None, *,
                      idempotency_key: str | None = None) -> Publication:
        """Append to history (per `policy`) and hand to every subscribed node; return the
        publication with its position (and `publisher`, kept with it in delivery and
        history). With `idempotency_key`, at most once per key and topic within the TTL
        (see the module contract). Raises `BrokerUnavailable` / `BrokerError`."""

    @abstractmethod
    async def history(self, topic: str, since: int | None, limit: int,
                      max_bytes: int = 0) -> HistoryPage:
        """Publications of `topic` with offset > `since`, oldest first, at most `limit`
        and (when `max_bytes` > 0) about `max_bytes` bytes, and the topic's current
        position (see the module contract)."""

    async def remove_history(self, topic: str) -> None:
        """Drop the publications `topic` keeps; its position (top offset and epoch)
        stays, so the next publish continues the offsets and a client's position stays
        valid (Centrifugo's ``history_remove``). Raises `BrokerUnavailable`; the
        default raises `NotImplementedError` (a broker that cannot do it)."""
        raise NotImplementedError

    # Optional inline fast paths (see the module docstring); defaults do no work.
    def subscribe_nowait(self, topic: str) -> bool:
        """Subscribe without waiting, if this broker can; True when done."""
        return False

    def unsubscribe_nowait(self, topic: str) -> bool:
        """Unsubscribe without waiting, if this broker can; True when done."""
        return False

    def publish_nowait(self, topic: str, payload: bytes, policy: HistoryPolicy,
                       publisher: Publisher | None = None, *,
                       idempotency_key: str | None = None) -> PublishResult:
        """The publication when done inline; a future already queued in publish order;
        or None: then await `publish`."""
        return None

    def publish_counted_nowait(self, topic: str, payload: bytes) -> CountResult:
        """Publish `payload` on `topic` without history (delivered as `publish` with
        `NO_HISTORY` and no publisher delivers it) and count the subscribers the engine
        handed it to (one per subscribed node; Redis: PUBLISH's reply). Returns the
        count inline, or a future already queued in publish order (after every earlier
        `publish_nowait` or `publish_counted_nowait` of this broker), or None when this
        broker cannot count every node's subscription (the default: then `publish`, the
        count unknown; e.g. a Redis Cluster's PUBLISH counts one shard's subscribers
        only). 0 must mean that no node received it. The future fails as `publish`
        does."""
        return None

    def history_nowait(self, topic: str, since: int | None, limit: int,
                       max_bytes: int = 0) -> HistoryPage | None:
        """The page when it can be read without I/O, else None (await `history`)."""
        return None

    @property
    def shared(self) -> bool:
        """True when other processes can reach this broker (required for --workers > 1)."""
        return False

    @property
    def healthy(self) -> bool:
        """False while the broker cannot serve (link down, reader restarting)."""
        return True
