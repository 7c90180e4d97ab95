"""Which history policy applies to a topic: the first matching rule, else the default.

Rules come from `Settings.history_rules` (``PUBSOCKET_HISTORY``) and from
``pubsub(history=...)``; patterns are `fnmatch` globs (``*`` also matches ``:`` and ``/``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from ..brokers.base import NO_HISTORY, HistoryPolicy
from ..config import Settings

_CACHE_SIZE = 4096  # resolved topics remembered (cleared when full: bounded memory)


class HistoryRules:
    """Resolves a topic's `HistoryPolicy`; cached, since it is asked on every publish."""

    def __init__(self, default: HistoryPolicy,
                 rules: Iterable[tuple[str, HistoryPolicy]] = ()) -> None:
        self.default = default
        self._rules = list(rules)
        self._cache: dict[str, HistoryPolicy] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryRules:
        default = HistoryPolicy(settings.history_size, settings.history_ttl) \
            if settings.history_size else NO_HISTORY
        return cls(default, ((pattern, HistoryPolicy(size, ttl) if size else NO_HISTORY)
                             for pattern, size, ttl in settings.history_rules))

    def prepend(self, rules: Mapping[str, HistoryPolicy | None]) -> None:
        """Add app rules ahead of the settings' (None turns history off for a pattern)."""
        self._rules[:0] = [(p, policy or NO_HISTORY) for p, policy in rules.items()]
        self._cache.clear()

    def policy(self, topic: str) -> HistoryPolicy:
        found = self._cache.get(topic)
        if found is not None:
            return found
        found = next((p for pattern, p in self._rules if fnmatchcase(topic, pattern)),
                     self.default)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[topic] = found
        return found
