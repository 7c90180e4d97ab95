"""The network layer: HTTP/1.1 + WebSocket on asyncio/uvloop; the only code touching sockets."""

from .asgi import ASGIApp
from .runner import Server, new_event_loop, run

__all__ = ["ASGIApp", "Server", "new_event_loop", "run"]
