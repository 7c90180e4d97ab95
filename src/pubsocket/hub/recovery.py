"""Pure decisions of recovery: what a subscriber coming back with `since` is replayed.

No I/O and no hub state: the hub reads a history page (and buffers live publications
while it reads), then asks `recover` what to deliver. The rule is all or nothing: the
subscriber gets every publication after `since` with no gap and no duplicate
(``recovered=True``), or it is told ``recovered=False`` with the position the stream
continues from and gets no partial history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ..brokers.base import HistoryPage, Position, Publication, size_of
from ..protocol import SubscribeResult

# A `since` epoch meaning "whatever the topic's epoch is" (Centrifuge: an empty epoch in
# a recovering subscribe or a history `since`). Longer than the 64 characters any
# client's epoch may have, so only a codec sets it, never a client's bytes.
ANY_EPOCH: Final = "any:" + "*" * 64


def resolve(since: Position, epoch: str) -> Position:
    """`since` with `ANY_EPOCH` replaced by `epoch` (the topic's own); else unchanged."""
    return Position(since.offset, epoch) if since.epoch == ANY_EPOCH else since


def recover(since: Position, page: HistoryPage, live: Sequence[Publication],
            upto: Position, gap: Position | None = None, *, max_count: int = 0,
            max_bytes: int = 0) -> SubscribeResult:
    """The outcome for a subscriber asking to resume after `since`, going live at `upto`.

    `upto` is the last publication this node fanned out to the topic (what live delivery
    continues after); `page` is history read after `since`; `live` is what was fanned
    out while the read was in flight (it may overlap the page). `gap`: the node's own
    live stream had a hole during the read, after which delivery went on at `gap`
    (`live` then holds only what came after it, and that is handed over, up to `upto`).
    Otherwise the replay must hold every offset in ``(since, upto]`` exactly once, from
    the page and `live` together; anything beyond `upto` reaches the subscriber through
    live delivery, so it is never replayed.

    ``result.position`` is where the subscriber's stream continues after: every
    publication in ``result.replay`` and every later delivery has a higher offset.

    A `since` of `ANY_EPOCH` is taken to be in `upto`'s epoch.

    A replay of more than `max_count` publications or `max_bytes` bytes (`size_of`;
    0: no cap) is not sent at all: ``recovered=False``, never a partial replay.
    """
    since = resolve(since, upto.epoch)
    if gap is not None:
        return SubscribeResult(gap, False, tuple(
            p for p in live if p.epoch == gap.epoch and gap.offset < p.offset <= upto.offset))
    if upto.epoch != since.epoch or since.offset > upto.offset:
        return SubscribeResult(upto, False)
    replay = [p for p in merge(since.offset, since.epoch, [*page.publications, *live])
              if p.offset <= upto.offset]
    # Distinct offsets in (since, upto]: as many as the range is long means all of them.
    if len(replay) != upto.offset - since.offset:
        return SubscribeResult(upto, False)  # history no longer holds all of it
    if (max_count and len(replay) > max_count) or (
            max_bytes and sum(map(size_of, replay)) > max_bytes):
        return SubscribeResult(upto, False)  # more than one reply may carry
    return SubscribeResult(since, True, tuple(replay))


def merge(start: int, epoch: str, pages: Iterable[Publication]) -> list[Publication]:
    """Publications of `epoch` after offset `start` from several sources (history pages,
    buffered live deliveries), each offset once, in offset order. Holes are left for the
    caller to notice (`offset != previous + 1`)."""
    seen: dict[int, Publication] = {}
    for pub in pages:
        if pub.epoch == epoch and pub.offset > start:
            seen.setdefault(pub.offset, pub)
    return [seen[offset] for offset in sorted(seen)]
