"""Topics, subscribers, fan-out and the per-connection pub/sub session."""

from .core import Hub, HubStats, Subscriber
from .session import Session

__all__ = ["Hub", "HubStats", "Session", "Subscriber"]
