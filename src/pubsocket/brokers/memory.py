"""TEMPORARY memory broker for hub development (replaced by the broker branch)."""

from __future__ import annotations

import secrets
from collections import deque

from .base import Broker, DeliverFn, HistoryPage, HistoryPolicy, Position, Publication, ResyncFn


class MemoryBroker(Broker):
    def __init__(self, meta_ttl: float = 86400.0, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._deliver: DeliverFn | None = None
        self._topics: set[str] = set()
        self._hist: dict[str, tuple[list[object], deque[Publication]]] = {}

    async def start(self, deliver: DeliverFn, resync: ResyncFn | None = None) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def subscribe(self, topic: str) -> None:
        self.subscribe_nowait(topic)

    async def unsubscribe(self, topic: str) -> None:
        self.unsubscribe_nowait(topic)

    async def publish(self, topic: str, payload: bytes, policy: HistoryPolicy) -> Publication:
        pub = self.publish_nowait(topic, payload, policy)
        assert isinstance(pub, Publication)
        return pub

    async def history(self, topic: str, since: int | None, limit: int) -> HistoryPage:
        page = self.history_nowait(topic, since, limit)
        assert page is not None
        return page

    def subscribe_nowait(self, topic: str) -> bool:
        self._topics.add(topic)
        return True

    def unsubscribe_nowait(self, topic: str) -> bool:
        self._topics.discard(topic)
        return True

    def _rec(self, topic: str, size: int) -> tuple[list[object], deque[Publication]]:
        rec = self._hist.get(topic)
        if rec is None:
            rec = self._hist[topic] = ([secrets.token_hex(4), 0], deque(maxlen=max(size, 1)))
        return rec

    def publish_nowait(self, topic: str, payload: bytes, policy: HistoryPolicy) -> Publication:
        if policy.size:
            meta, ring = self._rec(topic, policy.size)
            meta[1] = int(meta[1]) + 1  # type: ignore[call-overload]
            pub = Publication(int(meta[1]), str(meta[0]), payload)  # type: ignore[call-overload]
            ring.append(pub)
        else:
            pub = Publication(0, "", payload)
        if self._deliver is not None and topic in self._topics:
            self._deliver(topic, pub)
        return pub

    def history_nowait(self, topic: str, since: int | None, limit: int) -> HistoryPage:
        meta, ring = self._rec(topic, 100)
        pubs = [p for p in ring if since is None or p.offset > since][:limit] if limit else []
        return HistoryPage(pubs, Position(int(meta[1]), str(meta[0])))  # type: ignore[call-overload]
