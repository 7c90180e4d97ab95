"""Presence: who is subscribed to a topic, on every node (memory and Redis)."""

from .base import DEFAULT_TTL, ClientInfo, Presence, PresenceUnavailable, Removed, Stats
from .memory import MemoryPresence, MemoryPresenceStore

__all__ = [
    "DEFAULT_TTL",
    "ClientInfo",
    "MemoryPresence",
    "MemoryPresenceStore",
    "Presence",
    "PresenceUnavailable",
    "Removed",
    "Stats",
]
