"""Pure decisions of recovery: what a subscriber coming back with `since` is replayed.

No I/O and no hub state: the hub reads a history page (and buffers live publications
while it reads), then asks `recover` what to deliver. The rule is all or nothing: the
subscriber gets every publication after `since` with no gap and no duplicate
(``recovered=True``), or it is told ``recovered=False`` with the position the stream
continues from and gets no partial history.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from ..brokers.base import HistoryPage, Position, Publication
from ..protocol import SubscribeResult


def recover(since: Position, page: HistoryPage, live: Sequence[Publication],
            gap: Position | None = None) -> SubscribeResult:
    """The outcome for a subscriber asking to resume after `since`.

    `page` is history read after `since` (oldest first) with the topic's position at
    read time; `live` is what the hub fanned out to the topic while the read was in
    flight (it may overlap the page). `gap` is set when the hub's own live stream had a
    hole during the read (then recovery cannot be promised).

    ``result.position`` is where the subscriber's stream continues after: every
    publication in ``result.replay`` and every later delivery has a higher offset.
    """
    top = page.position
    if gap is not None:
        return SubscribeResult(gap, False, tuple(_after(live, gap)))
    pubs = page.publications
    last = pubs[-1].offset if pubs else since.offset
    intact = (
        top.epoch == since.epoch
        and since.offset <= top.offset
        and (not pubs or pubs[0].offset == since.offset + 1)
        and last == top.offset  # the read was not cut short by its limit or the TTL
        and _contiguous(pubs)
    )
    if not intact:
        return SubscribeResult(top, False, tuple(_after(live, top)))
    tail = _after(live, Position(last, top.epoch))
    return SubscribeResult(since, True, (*pubs, *tail))


def merge(start: int, epoch: str, pages: Iterable[Publication]) -> list[Publication]:
    """Publications of `epoch` after offset `start` from several sources (history pages,
    buffered live deliveries), each offset once, in offset order. Holes are left for the
    caller to notice (`offset != previous + 1`)."""
    seen: dict[int, Publication] = {}
    for pub in pages:
        if pub.epoch == epoch and pub.offset > start:
            seen.setdefault(pub.offset, pub)
    return [seen[offset] for offset in sorted(seen)]


def _after(live: Iterable[Publication], position: Position) -> list[Publication]:
    return [p for p in live if p.epoch == position.epoch and p.offset > position.offset]


def _contiguous(pubs: Sequence[Publication]) -> bool:
    return all(b.offset == a.offset + 1 for a, b in itertools.pairwise(pubs))
