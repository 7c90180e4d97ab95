"""Both transports behind one interface: the native `Server` and uvicorn + `ASGIApp`.

`start(kind, app)` returns a started server with ``port`` and ``shutdown()``; the
`serve_any` fixture (tests/conftest.py) is parametrized over both kinds, so the
documented WebSocket behaviour is checked on each.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import uvicorn

from pubsocket import App, ASGIApp, Server

KINDS = ("native", "asgi")


class Started(Protocol):
    """A server bound on 127.0.0.1."""

    @property
    def port(self) -> int: ...

    async def shutdown(self) -> None: ...


class Uvicorn:
    """uvicorn serving ``ASGIApp(app)`` in this event loop on port 0.

    The limits that uvicorn itself enforces are set from the app's settings, as a
    deployment would with ``--ws-max-size`` / ``--ws-ping-interval`` / ``--ws-ping-timeout``.
    """

    def __init__(self, app: App, server_limits: bool = True) -> None:
        s = app.settings
        limits: dict[str, object] = {}
        if server_limits:  # else uvicorn's defaults (16 MiB messages, 20 s pings)
            limits = {"ws_max_size": s.max_message_size or 2**62,
                      "ws_ping_interval": s.ping_interval or None,
                      "ws_ping_timeout": s.ping_timeout or None}
        config = uvicorn.Config(
            ASGIApp(app), host="127.0.0.1", port=0, lifespan="on", log_level="warning",
            ws="websockets-sansio", timeout_graceful_shutdown=5, **limits,  # type: ignore[arg-type]
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> Uvicorn:
        """Serve, and wait (bounded) until the socket is bound."""
        self._task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(10):
            while not self.server.started:
                if self._task.done():
                    self._task.result()  # raises what stopped it
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.01)
        self._port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def running_calls(self) -> int:
        """ASGI application calls still running (uvicorn's own count of its tasks)."""
        return len(self.server.server_state.tasks)

    async def shutdown(self) -> None:
        """What SIGTERM does: stop, close the WebSockets, run lifespan shutdown (bounded)."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self.server.should_exit = True
        await asyncio.wait_for(task, 15)


async def start_server(kind: str, app: App) -> Started:
    """A started server of `kind` ("native" or "asgi") for `app` on a free port."""
    if kind == "native":
        server = Server(app, "127.0.0.1", 0)
        await server.start()
        return server
    if kind == "asgi":
        return await Uvicorn(app).start()
    raise ValueError(kind)
