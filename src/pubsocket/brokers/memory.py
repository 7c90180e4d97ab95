"""The in-memory broker: one process, history in per-topic rings, the same delivery path.

Contracts, beyond `Broker`:

* Everything is inline: `publish_nowait` returns the `Publication` and has already called
  ``deliver`` (synchronously) when this node subscribes the topic; `history_nowait`
  answers at once. The coroutine methods just call them.
* Each topic with history has a record: a random epoch (new for every record), the top
  offset, and a ring of at most ``policy.size`` publications. The ring is dropped
  ``policy.ttl`` seconds after the topic's last publish; the record itself (epoch and
  offset) is dropped `meta_ttl` seconds after the last publish or history read, and the
  next use of the topic starts a new epoch at offset 1. Expiry is checked lazily on
  every access, and a background sweep (bounded work per round) frees what nobody
  touches any more.
* Per-topic byte cap: a topic's ring keeps at most `topic_max_bytes` (its
  publications' `kept_bytes` share: payload, publisher info and the per-publication
  overhead); over it the oldest publications are dropped, never the newest. Like
  trimming by count, that only shortens history: a client recovering from a position
  the ring no longer holds learns it (recovered: false).
* Node-wide byte cap: `kept_bytes` stays under `max_bytes`. It counts what the process
  really holds, calibrated with tracemalloc on CPython 3.11 (the test
  ``test_kept_bytes_is_what_the_process_holds`` keeps it honest): per topic record
  `RECORD_COST` plus the topic string, plus `RING_COST` while the topic keeps history;
  per kept publication `ENTRY_COST` plus its payload and publisher info. Over the cap,
  whole records are dropped least-recently-published first, so those topics get a new
  epoch: a client recovering from one learns it lost history (recovered: false)
  instead of getting a stream with a hole. Only when the topic just published is the
  last one left is its own oldest history trimmed (never its newest publication). So
  meta-only records (a position whose history expired, kept `meta_ttl`) are bounded by
  the cap too: at most ``max_bytes / (RECORD_COST + topic)`` of them.
* Idempotency keys (per topic) are kept `idempotency_ttl` seconds in one insertion-ordered
  map (every key has the same TTL, so the oldest is at the front and expires first),
  at most `max_idempotency_keys` of them (the oldest dropped beyond that).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator

from .base import (
    IDEMPOTENCY_TTL,
    NO_HISTORY,
    Broker,
    DeliverFn,
    HistoryPage,
    HistoryPolicy,
    Position,
    Publication,
    Publisher,
    ResyncFn,
    size_of,
)

# What the process holds around the bytes, measured with tracemalloc (CPython 3.11,
# 64-bit): a kept publication is its Publication (64 B with the GC header), the bytes
# object's header and alignment (~40 B) and a deque slot (8 B, blocks amortized); a
# record is the _Record (88 B), its epoch string (64 B), float timestamps (3 x 24 B),
# the OrderedDict entry with its share of table slack (~250 B); a ring is a deque
# object with its first block (760 B). The topic string is counted by its own size.
ENTRY_COST = 120
RECORD_COST = 500
RING_COST = 760
MAX_BYTES = 64 * 1024 * 1024  # the node-wide default cap
TOPIC_MAX_BYTES = 4 * 1024 * 1024  # one topic's history, on every broker
_SWEEP_BATCH = 5000  # records looked at per sweep round: bounded work per loop turn


def record_cost(topic: str) -> int:
    """What one record counts towards the byte cap, before its ring."""
    return RECORD_COST + sys.getsizeof(topic)


def _bounded(pubs: Iterable[Publication], max_bytes: int) -> list[Publication]:
    """The leading `pubs` whose `size_of` sum stays within `max_bytes` (at least one)."""
    out: list[Publication] = []
    total = 0
    for pub in pubs:
        total += size_of(pub)
        if out and total > max_bytes:
            break
        out.append(pub)
        if total >= max_bytes:
            break
    return out


def _cost(payload: bytes, publisher: Publisher | None) -> int:
    """What one kept publication counts towards the byte cap."""
    if publisher is None:
        return ENTRY_COST + len(payload)
    return ENTRY_COST + len(payload) + len(publisher.info)


# The ring of a record that keeps nothing (new, or its history expired): shared, so a
# meta-only record holds no deque of its own. Never appended to: a publish makes the
# record a ring of the policy's size (maxlen 0 never equals a size that keeps history).
_NO_RING: deque[Publication] = deque(maxlen=0)


class _Record:
    """One topic's position and kept history."""

    __slots__ = ("bytes", "epoch", "published_at", "ring", "top", "touched_at", "ttl")

    def __init__(self, now: float) -> None:
        self.epoch = secrets.token_hex(4)
        self.top = 0
        self.ring: deque[Publication] = _NO_RING
        self.bytes = 0  # _cost() summed over `ring`, plus RING_COST if it is its own
        self.published_at = now
        self.touched_at = now  # last publish or history read: the meta_ttl clock
        self.ttl = 0.0  # the history ttl of the last publish


class MemoryBroker(Broker):
    """Delivers each publish synchronously to this process's hub, for subscribed topics.

    Counters: `topic_records`, `kept_bytes`, `evicted_topics` (dropped by the byte cap).
    """

    def __init__(
        self,
        *,
        meta_ttl: float = 86400.0,
        max_bytes: int = MAX_BYTES,
        topic_max_bytes: int = TOPIC_MAX_BYTES,
        sweep_interval: float = 1.0,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        max_idempotency_keys: int = 100_000,
    ) -> None:
        """`max_bytes`: the node-wide cap on `kept_bytes`; `topic_max_bytes`: one topic's
        history (0 turns either off); `meta_ttl` as in `Broker`."""
        self._deliver: DeliverFn | None = None
        self._topics: set[str] = set()
        # Ordered by last publish (oldest first): the byte cap evicts from the front.
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._bytes = 0
        self._meta_ttl = meta_ttl
        self._max_bytes = max_bytes or sys.maxsize
        # A ring's own overhead is not history: the per-topic cap is on its entries.
        self._topic_limit = (topic_max_bytes or sys.maxsize) + RING_COST
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_keys: Iterator[str] = iter(())
        self.evicted_topics = 0
        # (topic, key) -> (offset, epoch, expires at), oldest first.
        self._seen: OrderedDict[tuple[str, str], tuple[int, str, float]] = OrderedDict()
        self._idempotency_ttl = idempotency_ttl
        self._max_keys = max_idempotency_keys

    @property
    def topic_records(self) -> int:
        return len(self._records)

    @property
    def kept_bytes(self) -> int:
        return self._bytes

    async def start(self, deliver: DeliverFn, resync: ResyncFn | None = None) -> None:
        """Begin delivering; `resync` is never called (there is no link to lose)."""
        self._deliver = deliver
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="pubsocket-mem-sweep")

    async def close(self) -> None:
        self._deliver = None
        self._topics.clear()
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def subscribe(self, topic: str) -> None:
        self.subscribe_nowait(topic)

    async def unsubscribe(self, topic: str) -> None:
        self.unsubscribe_nowait(topic)

    async def publish(
        self, topic: str, payload: bytes, policy: HistoryPolicy, publisher: Publisher | None = None,
        *, idempotency_key: str | None = None,
    ) -> Publication:
        return self.publish_nowait(topic, payload, policy, publisher,
                                   idempotency_key=idempotency_key)

    async def history(self, topic: str, since: int | None, limit: int,
                      max_bytes: int = 0) -> HistoryPage:
        return self.history_nowait(topic, since, limit, max_bytes)

    async def remove_history(self, topic: str) -> None:
        rec = self._records.get(topic)
        if rec is not None and rec.ring:
            self._clear(rec)

    def subscribe_nowait(self, topic: str) -> bool:
        self._topics.add(topic)
        return True

    def unsubscribe_nowait(self, topic: str) -> bool:
        self._topics.discard(topic)
        return True

    def publish_nowait(
        self, topic: str, payload: bytes, policy: HistoryPolicy, publisher: Publisher | None = None,
        *, idempotency_key: str | None = None,
    ) -> Publication:
        """Append to the topic's ring (per `policy`), deliver inline, return the publication.

        `publisher` is kept as given (one object per connection, shared by its
        publications); its `info` counts towards the byte cap like payload bytes."""
        if idempotency_key is not None:
            seen = self._seen_key(topic, idempotency_key)
            if seen is not None:
                return Publication(seen[0], seen[1], payload, publisher)
            pub = self._publish(topic, payload, policy, publisher)
            self._remember(topic, idempotency_key, pub)
            return pub
        return self._publish(topic, payload, policy, publisher)

    def publish_counted_nowait(self, topic: str, payload: bytes) -> int:
        """Publish without history and deliver inline; 1 when this process receives
        `topic`, else 0 (no other process shares this broker)."""
        receivers = 1 if self._deliver is not None and topic in self._topics else 0
        self._publish(topic, payload, NO_HISTORY, None)
        return receivers

    def _seen_key(self, topic: str, key: str) -> tuple[int, str, float] | None:
        now = time.monotonic()
        seen = self._seen
        while seen:  # expire from the front: the oldest key expires first
            first = next(iter(seen.values()))
            if first[2] > now:
                break
            seen.popitem(last=False)
        return seen.get((topic, key))

    def _remember(self, topic: str, key: str, pub: Publication) -> None:
        if self._idempotency_ttl <= 0 or self._max_keys <= 0:
            return
        self._seen[(topic, key)] = (pub.offset, pub.epoch,
                                    time.monotonic() + self._idempotency_ttl)
        if len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)

    def _publish(
        self, topic: str, payload: bytes, policy: HistoryPolicy, publisher: Publisher | None
    ) -> Publication:
        size = policy.size
        if size <= 0:
            pub = Publication(0, "", payload, publisher)
        else:
            now = time.monotonic()
            rec = self._records.get(topic)
            if rec is None or now - rec.touched_at > self._meta_ttl:
                rec = self._new_record(topic, now)
            else:
                self._records.move_to_end(topic)
                if rec.ring and now - rec.published_at > rec.ttl:
                    self._clear(rec)  # the kept history expired before this publish
            ring = rec.ring
            if ring.maxlen != size:  # first publish, or the policy changed: keep the newest
                ring = rec.ring = deque(ring, maxlen=size)
                self._recount(rec)
            # `_cost` inlined (one publish, two calls fewer): the new entry's, less the
            # oldest's when the append pushes it out.
            cost = ENTRY_COST + len(payload) + (0 if publisher is None else len(publisher.info))
            if len(ring) == size:
                old = ring[0]
                cost -= ENTRY_COST + len(old.payload) + (
                    0 if old.publisher is None else len(old.publisher.info))
            rec.top += 1
            # Kept payloads are copied to their exact size: orjson.dumps hands back bytes
            # with a ~4 KiB allocation behind even a 10-byte result, which history would
            # otherwise hold (measured with tracemalloc: 4 KiB vs 56 B per publication).
            # A publisher's info is copied to its exact size where it is made (hub.session).
            pub = Publication(rec.top, rec.epoch, bytes(memoryview(payload)), publisher)
            ring.append(pub)
            rec.bytes += cost
            self._bytes += cost
            if rec.bytes > self._topic_limit:
                self._trim(rec)
            rec.published_at = rec.touched_at = now
            rec.ttl = policy.ttl
            if self._bytes > self._max_bytes:
                self._evict(rec)
        deliver = self._deliver
        if deliver is not None and topic in self._topics:
            deliver(topic, pub)
        return pub

    def history_nowait(self, topic: str, since: int | None, limit: int,
                       max_bytes: int = 0) -> HistoryPage:
        """Publications with offset > `since`, oldest first, at most `limit` (and
        `max_bytes`, see `Broker`); the position."""
        now = time.monotonic()
        rec = self._records.get(topic)
        if rec is None or now - rec.touched_at > self._meta_ttl:
            rec = self._new_record(topic, now)
            if self._bytes > self._max_bytes:
                self._evict(rec)
        rec.touched_at = now
        ring = rec.ring
        if ring and now - rec.published_at > rec.ttl:
            self._clear(rec)
        pubs: list[Publication] = []
        if limit > 0 and ring:
            # The ring holds contiguous offsets ring[0].offset .. rec.top.
            start = 0 if since is None else max(0, since + 1 - ring[0].offset)
            window = itertools.islice(ring, start, start + limit)
            pubs = list(window) if max_bytes <= 0 else _bounded(window, max_bytes)
        return HistoryPage(pubs, Position(rec.top, rec.epoch))

    # -- records ------------------------------------------------------------------------
    def _new_record(self, topic: str, now: float) -> _Record:
        old = self._records.pop(topic, None)
        if old is not None:
            self._bytes -= record_cost(topic) + old.bytes
        rec = self._records[topic] = _Record(now)
        self._bytes += record_cost(topic)
        return rec

    def _clear(self, rec: _Record) -> None:
        rec.ring.clear()  # a caller may still hold it: it must read as empty
        rec.ring = _NO_RING  # and the deque goes too: a meta-only record holds none
        self._bytes -= rec.bytes
        rec.bytes = 0

    def _recount(self, rec: _Record) -> None:
        new = RING_COST + sum(_cost(p.payload, p.publisher) for p in rec.ring)
        self._bytes += new - rec.bytes
        rec.bytes = new

    def _trim(self, rec: _Record) -> None:
        """Drop the topic's oldest publications while over its cap, never the newest."""
        ring = rec.ring
        while rec.bytes > self._topic_limit and len(ring) > 1:
            old = ring.popleft()
            cost = _cost(old.payload, old.publisher)
            rec.bytes -= cost
            self._bytes -= cost

    def _evict(self, keep: _Record) -> None:
        """Drop least-recently-published records until under the cap, `keep` last."""
        records = self._records
        while self._bytes > self._max_bytes and len(records) > 1:
            topic, rec = next(iter(records.items()))
            if rec is keep:  # a history read's fresh record sits at the end; never here
                records.move_to_end(topic)
                continue
            del records[topic]
            self._bytes -= record_cost(topic) + rec.bytes
            self.evicted_topics += 1
        ring = keep.ring
        while self._bytes > self._max_bytes and len(ring) > 1:
            old = ring.popleft()
            cost = _cost(old.payload, old.publisher)
            keep.bytes -= cost
            self._bytes -= cost

    def sweep(self, now: float | None = None, batch: int = _SWEEP_BATCH) -> int:
        """Expire up to `batch` records' history or meta; returns how many were looked at.

        Rounds rotate over a snapshot of the topics, so every record is looked at within
        ``len(records) / batch`` rounds, and one round never holds the loop for long.
        """
        now = time.monotonic() if now is None else now
        seen = 0
        for topic in itertools.islice(self._sweep_keys, batch):
            seen += 1
            rec = self._records.get(topic)
            if rec is None:
                continue
            if now - rec.touched_at > self._meta_ttl:
                del self._records[topic]
                self._bytes -= record_cost(topic) + rec.bytes
            elif rec.ring and now - rec.published_at > rec.ttl:
                self._clear(rec)
        if seen < batch:  # the snapshot is exhausted: the next round starts a new one
            self._sweep_keys = iter(list(self._records))
        return seen

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()
