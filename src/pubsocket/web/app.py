"""`App`: routes + settings + hub, and the dispatch of one request to its handler.

Dispatch order for a request: route lookup (static files for unmatched GETs, else 404/405),
then for upgrades the Origin policy (403; same site unless listed: `web.origins`) and the
connection cap (503), then auth (429 once the peer address spent its failed-auth budget,
else 401 for a bad token; for upgrades also from a ``bearer, <token>`` subprotocol offer,
or, on a route with a connection hook and no token, the hook behind a same-origin check:
web/connect_auth.py), then for plain HTTP the client's request budget (429 +
``Retry-After``, web/limits.py), then the handler.
A route that needs no token still checks one that is presented (a Bearer header or a
``bearer`` offer): a bad token is a 401 everywhere, never silently anonymous, and a
good one sets the principal, so its ``topics`` claim limits an open hub too.
All refusals happen before any upgrade. After a WebSocket handler returns, its
connection is closed with 1000; if it raised, with 1011 and the traceback goes to the
server log only. Every request has a `request.principal` (anonymous unless secured).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..auth import BEARER_SUBPROTOCOL, Authenticator, offered_subprotocols
from ..config import Settings
from ..errors import (
    CloseCode,
    ConfigError,
    ConnectionClosed,
    HTTPError,
    RateLimited,
    TokenExpired,
    Unauthorized,
)
from ..hub import Hub
from ..log import unauthorized
from .connect_auth import authenticate_with_hook, carries_token, connect_hook
from .cors import cors_headers
from .health import health_response
from .limits import HttpLimits, retry_after
from .origins import origin_allowed
from .request import Request
from .response import (
    HTML_HEADERS,
    SECURITY_HEADERS,
    Response,
    ResponseFactory,
    error_response,
    with_defaults,
)
from .routing import AUTH_ATTR, Handler, Route, Router
from .static import static_response
from .stats import TransportStats

log = logging.getLogger("pubsocket.app")

Hook = Callable[[], Awaitable[None]]


class App:
    """A pubsocket application. Two apps in one process share nothing."""

    def __init__(self, settings: Settings | None = None, public_dir: str | Path | None = None):
        self.settings = settings or Settings()
        self.router = Router()
        self.auth = Authenticator(self.settings.api_key, self.settings.secret)
        self.public_dir = Path(public_dir) if public_dir else None
        self.hub = Hub(self.settings)
        self.response = ResponseFactory()
        self.limits = HttpLimits(self.settings)
        # Headers every static file gets, and every HTML response of a handler, unless
        # the response sets its own (web/response.py); edit or empty them to change the
        # policy. X-Content-Type-Options: nosniff goes on every response.
        self.security_headers: dict[str, str] = dict(SECURITY_HEADERS)
        self.html_headers: dict[str, str] = dict(HTML_HEADERS)
        # Paths served to pages on other allowed origins (web/cors.py).
        self.cors_paths: set[str] = set()
        # Set by the transport serving this app (read by /metrics).
        self.transport_stats: TransportStats | None = None
        self.open_connections: Callable[[], int] = lambda: 0
        # Set by the transport on SIGTERM: readiness answers 503 (web/health.py).
        self.draining = False
        # The project folder it was loaded from (`load_app`), for advice in errors.
        self.root: Path | None = None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._outbox: asyncio.Task[None] | None = None

    # -- registration ----------------------------------------------------------------
    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """Decorator registering a handler ``async def h(request, response)``."""

        def register(handler: Handler) -> Handler:
            _require_async(handler, method, path)
            self.router.add(method, path, handler)
            return handler

        return register

    def get(self, path: str) -> Callable[[Handler], Handler]:
        """Register a GET (and WebSocket upgrade) route."""
        return self.route("GET", path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        """Register a POST route (token required unless `noauth`)."""
        return self.route("POST", path)

    def put(self, path: str) -> Callable[[Handler], Handler]:
        """Register a PUT route (token required unless `noauth`)."""
        return self.route("PUT", path)

    def patch(self, path: str) -> Callable[[Handler], Handler]:
        """Register a PATCH route (token required unless `noauth`)."""
        return self.route("PATCH", path)

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        """Register a DELETE route (token required unless `noauth`)."""
        return self.route("DELETE", path)

    def on_startup(self, hook: Hook) -> Hook:
        """Run `hook` when the server starts, after the hub."""
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run `hook` when the server stops, before the hub."""
        self._shutdown.append(hook)
        return hook

    # -- lifecycle ---------------------------------------------------------------------
    def check(self) -> None:
        """Startup validation: raise `ConfigError` for a configuration that cannot work."""
        if self.settings.api_key or self.settings.secret:
            return
        secured = [r for r in self.router
                   if getattr(r.handler, AUTH_ATTR, None) in ("secured", "in_band")]
        if secured:
            raise ConfigError(
                f"{secured[0].method} {secured[0].path} is @secured() but neither API_KEY nor "
                f"SECRET is set ({self._secrets_advice()})"
            )
        if any(r.requires_auth() for r in self.router):
            log.warning("no API_KEY or SECRET is set: write routes will answer 401")

    def _secrets_advice(self) -> str:
        """Where to put the secrets, for this app's folder (not the repo's `make run`)."""
        env = (self.root / ".env") if self.root is not None else Path(".env")
        return f"set them in {env} or run `pubsocket env --file {env}`"

    async def startup(self) -> None:
        """Start the hub (and its broker), then the app's startup hooks."""
        self.check()
        await self.hub.start()
        if self.settings.outbox_dsn:  # the outbox relay, in-process (docs/publishing.md)
            self._outbox = _start_relay(self.hub, self.settings)
        for hook in self._startup:
            await hook()

    async def shutdown(self) -> None:
        """Run shutdown hooks, then stop the hub."""
        for hook in self._shutdown:
            await hook()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox.cancel()
            await asyncio.wait([outbox], timeout=5.0)
        await self.hub.close()

    # -- dispatch ----------------------------------------------------------------------
    async def handle(self, request: Request) -> Response | None:
        """Run the request through routing, checks and its handler.

        Returns the HTTP response to send, or None when the request was upgraded to a
        WebSocket (the connection has been closed by the time this returns).
        """
        response = await self._dispatch(request)
        if response is None:
            return None
        if self.cors_paths and (request.path.rstrip("/") or "/") in self.cors_paths:
            response.headers.extend(cors_headers(request, self.settings.allowed_origins))
        return with_defaults(response, {})  # nosniff; pages got theirs in _dispatch

    async def _dispatch(self, request: Request) -> Response | None:
        upgrader = request.upgrader
        request.app = self
        try:
            route = self._route(request)
            if route is None:
                return self._unrouted(request)
            if upgrader is not None:
                self._check_upgrade(request)
            hook = connect_hook(route.handler) if upgrader is not None else None
            if hook is not None and not carries_token(request):
                # The host's own login (web/connect_auth.py): Origin check, then the hook.
                request.principal = await authenticate_with_hook(self, request, hook)
                request.claims = dict(request.principal.claims)
            elif (route.requires_auth() or hook is not None
                  or _presents_token(request, route)):
                self._authenticate(request)
                if upgrader is None:
                    self.limits.charge(request)
            result = await route.handler(request, self.response)
        except HTTPError as exc:
            if upgrader is not None and upgrader.accepted is not None:
                await upgrader.accepted.close(CloseCode.POLICY_VIOLATION, exc.code)
                return None
            # Each 401 and 403 is logged here only, once, never where it is raised
            # (429s: in web/limits.py). A 401's kind and reason: `log.unauthorized`.
            if isinstance(exc, Unauthorized):
                unauthorized(exc, _peer(request))
            elif exc.status == 403:
                self.limits.refused(request, exc.code)
            return error_response(exc, _refusal_headers(exc))
        except ConnectionClosed:
            if upgrader is not None and upgrader.accepted is not None:
                return None
            log.exception("handler raised ConnectionClosed outside a WebSocket")
            return error_response(HTTPError(500, "internal_error", "internal server error"))
        except Exception:
            log.exception("handler for %s %s failed", request.method, request.path)
            if upgrader is not None and upgrader.accepted is not None:
                await upgrader.accepted.close(CloseCode.INTERNAL_ERROR, "internal error")
                return None
            return error_response(HTTPError(500, "internal_error", "internal server error"))
        if upgrader is not None and upgrader.accepted is not None:
            if not upgrader.accepted.attached:  # push-mode connections outlive the handler
                await upgrader.accepted.close(CloseCode.NORMAL)
            return None
        response = result if isinstance(result, Response) else self.response(result)
        if response.content_type.startswith("text/html"):
            with_defaults(response, self.html_headers)
        return response

    def _authenticate(self, request: Request) -> None:
        """Set the request's principal and claims from its token, or raise `Unauthorized`.

        Upgrades may carry the token in the subprotocol offer (``bearer, <token>``) since
        browsers cannot set headers; an ``Authorization`` header wins (auth/tokens.py).
        """
        offered = (offered_subprotocols(request.headers.getall("sec-websocket-protocol"))
                   if request.upgrader is not None else ())
        self.limits.before_auth(request)  # an address flooding bad tokens: 429, unverified
        self.limits.known_expired(request)  # a header refused as expired lately: 401
        try:
            principal = self.auth.authenticate(request.headers.getall("authorization"),
                                               offered)
        except Unauthorized as exc:
            self.limits.auth_failed(request, exc)  # not an expired one (`limits.charged`)
            if isinstance(exc, TokenExpired):  # an Authorization header wins: it was this
                self.limits.remember_expired(request)
            raise
        request.principal = principal
        # A plain dict, as before: handlers may mutate or serialize it (orjson refuses
        # the principal's read-only mapping).
        request.claims = dict(principal.claims)

    def _route(self, request: Request) -> Route | None:
        match = self.router.match(request.method, request.path)
        if match is None:
            return None
        route, params = match
        request.path_params = params
        return route

    def _unrouted(self, request: Request) -> Response:
        if request.method == "GET" and request.upgrader is None:
            found = health_response(self, request.path)
            if found is not None:
                return found
            found = static_response(self.public_dir, request.path)
            if found is not None:  # every static file is a page: the full defaults
                return with_defaults(found, self.security_headers)
        if self.router.allows(request.path):
            return error_response(HTTPError(405, "method_not_allowed", "method not allowed"))
        return error_response(HTTPError(404, "not_found", "not found"))

    def _check_upgrade(self, request: Request) -> None:
        if not origin_allowed(request.headers.get("origin"), request.headers.get("host"),
                              self.settings.allowed_origins):  # web/origins.py: same site
            raise HTTPError(403, "origin_not_allowed", "origin not allowed")  # _dispatch logs
        cap = self.settings.max_connections
        assert request.upgrader is not None
        if cap and request.upgrader.open_connections >= cap:
            raise HTTPError(503, "server_full", "too many connections, retry later")


def _presents_token(request: Request, route: Route) -> bool:
    """True when an open route's request carries a token we must check: a Bearer
    ``Authorization`` header, or (upgrades) a ``bearer`` subprotocol entry. Other
    schemes (Basic...) belong to the app; in-band routes read their token later."""
    if getattr(route.handler, AUTH_ATTR, None) == "in_band":
        return False
    if any(v.strip()[:7].lower() == "bearer " or v.strip().lower() == "bearer"
           for v in request.headers.getall("authorization")):
        return True
    return request.upgrader is not None and BEARER_SUBPROTOCOL in offered_subprotocols(
        request.headers.getall("sec-websocket-protocol"))


def _peer(request: Request) -> str:
    """The peer's address for a log line (never anything the client sent)."""
    return f"{request.client[0]}:{request.client[1]}" if request.client else "?"


def _require_async(handler: Handler, method: str, path: str) -> None:
    """Refuse a sync route function at load time: called on the event loop it would
    return a plain value where a coroutine is awaited (a 500 on every request)."""
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects count too
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call):
        return
    name = getattr(handler, "__qualname__", None) or repr(handler)
    raise ConfigError(f"the handler {name} for {method.upper()} {path} must be "
                      f"`async def` (route functions run on the event loop)")


def _start_relay(hub: Hub, settings: Settings) -> asyncio.Task[None]:
    """Run the outbox relay on the hub's broker with the hub's history rules (with
    ``--workers``, every worker runs one and the table's lock lets one of them work)."""
    from ..outbox.relay import Relay

    assert settings.outbox_dsn is not None
    relay = Relay(settings.outbox_dsn, hub.broker, hub.history_policy,
                  table=settings.outbox_table, poll=settings.outbox_poll,
                  batch=settings.outbox_batch)
    return asyncio.get_running_loop().create_task(relay.run(), name="pubsocket-outbox-relay")


def _refusal_headers(exc: HTTPError) -> dict[str, str] | None:
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RateLimited):
        return {"Retry-After": retry_after(exc.retry_after)}
    return None
