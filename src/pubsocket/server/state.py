"""Per-process server state shared by every protocol instance."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from .flush import Flusher

if TYPE_CHECKING:
    from ..web.app import App
    from .websocket import WSConnection


@dataclass(slots=True)
class ConnStats:
    """Transport counters since start (read by /metrics)."""

    ws_opened: int = 0
    ws_closed: int = 0
    messages_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    dropped: int = 0  # frames dropped because the connection was closing
    slow_closes: int = 0
    http_requests: int = 0


@dataclass(slots=True)
class ServerState:
    """What every connection of one server needs: app, settings, flusher, registries."""

    app: App
    settings: Settings
    loop: asyncio.AbstractEventLoop
    flusher: Flusher
    websockets: set[WSConnection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stats: ConnStats = field(default_factory=ConnStats)
    shutting_down: bool = False

    @classmethod
    def create(cls, app: App, loop: asyncio.AbstractEventLoop) -> ServerState:
        """State for `app` on `loop`."""
        return cls(app=app, settings=app.settings, loop=loop, flusher=Flusher(loop))
