"""Per-process server state shared by every protocol instance."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from ..web.stats import TransportStats
from .deflate import InflateBudget
from .flush import Flusher

if TYPE_CHECKING:
    from ..web.app import App
    from .http import HttpProtocol
    from .resting import Resting
    from .sse import SseStream
    from .websocket import WSConnection


@dataclass(slots=True)
class ServerState:
    """What every connection of one server needs: app, settings, flusher, registries."""

    app: App
    settings: Settings
    loop: asyncio.AbstractEventLoop
    flusher: Flusher
    # Registries of connections are dicts (keys only): an entry of a large dict costs
    # ~27-54 bytes, one of a large set 64-107 (a set's table is 4x its size after a
    # resize), and each holds every open WebSocket (docs/design.md "What an idle
    # subscribed connection holds").
    websockets: dict[WSConnection, None] = field(default_factory=dict)
    # the ones whose frame protocol is alive (server/keepalive.py rests them when idle)
    awake: dict[Resting, None] = field(default_factory=dict)
    # the new ones among them -> checks done (server/keepalive.py rests them sooner)
    fresh: dict[Resting, int] = field(default_factory=dict)
    streams: set[SseStream] = field(default_factory=set)  # open SSE responses
    # connections still speaking HTTP (not upgraded, not streaming): closed at shutdown
    # when idle between requests (server/runner.py)
    http: dict[HttpProtocol, None] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stats: TransportStats = field(default_factory=TransportStats)
    shutting_down: bool = False
    inflate: InflateBudget | None = None  # made by create(): needs the loop
    # The keepalive sweep's next run (loop time): a new connection counts its first
    # ping from it; one float shared by every connection opened before it.
    sweep_at: float = 0.0
    # Arms the sweep over new connections (server/keepalive.py); a connection calls it
    # when it makes `fresh` non-empty, so an idle server runs no 20/s timer.
    wake_fresh: Callable[[], None] | None = None

    @classmethod
    def create(cls, app: App, loop: asyncio.AbstractEventLoop) -> ServerState:
        """State for `app` on `loop`."""
        return cls(app=app, settings=app.settings, loop=loop, flusher=Flusher(loop),
                   inflate=InflateBudget(loop), sweep_at=loop.time())
