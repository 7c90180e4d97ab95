"""The hub's counters (`HubStats`, read by /metrics) and its read-only views of the
local topics (`Introspection`, a mixin of `Hub`: for the ops page and the metrics, never
the hot path)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .topic import Tally, Topic


class HubStats:
    """Counters since start (read by /metrics)."""

    __slots__ = ("bytes_out", "deliveries", "duplicates", "gaps", "published", "received",
                 "recoveries", "recovery_failures")

    def __init__(self) -> None:
        self.published = 0  # messages handed to the broker by this node
        self.received = 0  # messages the broker delivered to this node
        self.deliveries = 0  # frames queued to local subscribers
        self.bytes_out = 0  # frame bytes queued to local subscribers
        self.duplicates = 0  # publications dropped because they were already delivered
        self.gaps = 0  # holes announced to subscribers (could not be filled)
        self.recoveries = 0  # subscribes with since that recovered
        self.recovery_failures = 0  # subscribes with since answered recovered=False


class Introspection:
    """Counts over the hub's local topics (`Hub` holds `_topics`)."""

    _topics: dict[str, Topic]
    _tally: Tally  # the topics keep it equal to the sum of their counts

    @property
    def topic_count(self) -> int:
        """Topics with at least one local subscriber."""
        return len(self._topics)

    def subscriber_count(self, topic: str) -> int:
        """Local subscribers of `topic`."""
        entry = self._topics.get(topic)
        return 0 if entry is None else entry.count

    @property
    def subscription_count(self) -> int:
        """Local (subscriber, topic) pairs, held (recovering) ones included: O(1), kept
        by the topics as subscribers come and go."""
        return self._tally.n

    def busiest_topics(self, limit: int, match: Callable[[str], bool] | None = None
                       ) -> list[tuple[str, int]]:
        """Up to `limit` topics (those `match` accepts, when given) with the most local
        subscribers, as (topic, count), most first (ties by name). O(topics); for the ops
        page and the server API, not the hot path."""
        counts = ((topic, entry.count) for topic, entry in self._topics.items()
                  if match is None or match(topic))
        return heapq.nsmallest(limit, counts, key=lambda c: (-c[1], c[0]))


__all__ = ["HubStats", "Introspection"]
