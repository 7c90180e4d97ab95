"""Topics, subscribers, fan-out, recovery, and the per-connection pub/sub session."""

from .core import Hub, HubStats
from .session import Session
from .topic import Subscriber

__all__ = ["Hub", "HubStats", "Session", "Subscriber"]
