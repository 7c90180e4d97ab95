"""`Server`: binds the app to a socket and runs it until SIGTERM/SIGINT.

Shutdown: readiness answers 503 (`app.draining`) for `drain_delay` seconds while
everything still works, so a load balancer stops sending new clients here; then stop
accepting, close the keep-alive HTTP connections that are between requests (a busy one
closes after its answer, which says ``Connection: close``), send 1001 (Centrifuge:
3001) to every WebSocket at once (clients reconnect elsewhere after a jittered
backoff), wait for them and the in-flight requests up to
`shutdown_timeout` (10 s), abort whatever is left, then stop the app (hub and broker).
With `certfile` and `keyfile` set the one listener speaks TLS (server/tls.py). A port
that cannot be bound is a `ListenError` naming it, after the app was stopped again.
`run(..., workers=N)` forks N processes that share the port
with SO_REUSEPORT; N > 1 needs a shared broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from ..errors import CloseCode, ConfigError, ListenError
from ..web.app import App
from . import access
from .http import HttpProtocol
from .keepalive import Keepalive
from .state import ServerState
from .tls import server_context

log = logging.getLogger("pubsocket.server")


class Server:
    """One listening socket serving one `App` on the running loop."""

    def __init__(self, app: App, host: str | None = None, port: int | None = None,
                 reuse_port: bool = False) -> None:
        self.app = app
        self.host = host if host is not None else app.settings.host
        self.port = port if port is not None else app.settings.port
        self.reuse_port = reuse_port
        self.state: ServerState | None = None
        self.scheme = "http"  # "https" once started with TLS
        self._server: asyncio.Server | None = None
        self._keepalive: Keepalive | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Start the app, then listen. `self.port` is the bound port afterwards."""
        loop = asyncio.get_running_loop()
        settings = self.app.settings
        tls = server_context(settings)  # a bad certificate fails before anything starts
        self.state = state = ServerState.create(self.app, loop)
        self.app.transport_stats = state.stats
        self.app.open_connections = lambda: len(state.websockets) + len(state.streams)
        await self.app.startup()
        try:
            self._server = await loop.create_server(
                lambda: HttpProtocol(state), self.host, self.port,
                backlog=4096, reuse_port=self.reuse_port or None, ssl=tls,
                ssl_handshake_timeout=(settings.handshake_timeout or None) if tls else None,
            )
        except OSError as exc:
            await self.app.shutdown()
            raise ListenError(listen_failure(self.host, self.port, exc)) from None
        if settings.access_log:
            access.enable()
        self._keepalive = Keepalive(state)
        self._keepalive.start()
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self.scheme = "https" if tls is not None else "http"
        log.info("listening on %s://%s:%d", self.scheme, self.host, self.port)

    async def shutdown(self) -> None:
        """Graceful stop (see module docstring). Idempotent."""
        if self._stopped.is_set() or self.state is None:
            return
        self._stopped.set()
        state = self.state
        self.app.draining = True  # readiness answers 503 from now on
        if state.settings.drain_delay:
            log.info("draining for %.1fs before closing connections",
                     state.settings.drain_delay)
            await asyncio.sleep(state.settings.drain_delay)
        state.shutting_down = True
        if self._keepalive is not None:
            self._keepalive.stop()
        if self._server is not None:
            self._server.close()
        for http in list(state.http):  # keep-alive connections between requests
            http.close_if_idle()
        for conn in list(state.websockets):
            conn.close_nowait(CloseCode.GOING_AWAY, "server shutting down")
        for stream in list(state.streams):
            stream.close_nowait(CloseCode.GOING_AWAY, "server shutting down")
        timeout = state.settings.shutdown_timeout or 10.0
        pending = [t for t in state.tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(0.5, timeout - 1.0))
            for task in still:
                task.cancel()
        for conn in list(state.websockets):
            conn.abort()
        await self.app.shutdown()

    async def serve(self, ready: Callable[[Server], None] | None = None) -> None:
        """Start, call `ready`, run until SIGTERM/SIGINT, then shut down."""
        await self.start()
        settle_gc()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready(self)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.shutdown()


GC_GEN0 = 10_000  # net container allocations between young collections (CPython: 700)


def settle_gc() -> None:
    """Once the app started: what startup made (modules, routes, the app) goes to the
    permanent generation, so no full collection walks it again, and young collections
    run ~14x less often. Measured in chat (1000 clients, 10k deliveries/s): a young
    collection paused the loop ~0.15 ms and a middle one ~1.3 ms, each one a delivery
    late by that much (docs/design.md "Cost model")."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, gen1, gen2)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when available (it is a dependency on POSIX), else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(make_app: Callable[[], App], host: str, port: int, workers: int = 1,
        ready: Callable[[Server], None] | None = None) -> None:
    """Serve until signalled. With `workers` > 1, fork that many processes on one port.

    `make_app` is called once per process that serves: the first app made (here, in
    the parent) also serves worker 0, which inherits it unstarted through the fork;
    every other worker makes its own, so no two workers share a hub."""
    if workers <= 1:
        _run_one(make_app(), host, port, reuse_port=False, ready=ready)
        return
    app = make_app()
    if not app.hub.broker.shared:
        raise ConfigError("--workers > 1 needs a shared broker (PUBSOCKET_BROKER=redis://...)")
    _check_port_free(host, port)
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                _run_one(app if index == 0 else make_app(), host, port, reuse_port=True,
                         ready=ready if index == 0 else None)
            except BaseException:
                log.exception("worker failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    if status:
        sys.exit(status)


def _run_one(app: App, host: str, port: int, reuse_port: bool,
             ready: Callable[[Server], None] | None) -> None:
    loop = new_event_loop()
    try:
        loop.run_until_complete(Server(app, host, port, reuse_port).serve(ready))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ListenError(listen_failure(host, port, exc)) from None


def listen_failure(host: str, port: int, exc: OSError) -> str:
    """One line saying why `host`:`port` cannot be bound, naming both."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use (stop the other server or pick " \
               f"another port with --port or PORT)"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {host}:{port} (ports below 1024 need privileges)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
