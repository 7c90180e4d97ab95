"""Connection hooks: the host app's own login (a session cookie) authenticates a socket.

``pubsub("/ws/chat", authenticate=hook)`` calls ``hook(request)`` for every upgrade that
carries no token. The hook sees the upgrade request (``request.headers``,
``request.cookies``, ``request.client``) and returns who it is:

* a `Principal` (used as is),
* a ``str``: the user id (the principal's ``sub``; "" refuses, like None),
* a mapping of claims, as a token would carry them (``{"sub": id, "info": {...},
  "topics": {...}}``: ``info`` shows in presence, ``topics`` limits the connection),
* None (or False) to refuse with 401; or it raises `HTTPError` (e.g. 403) itself.

An ``async def`` hook runs on the event loop; a plain ``def`` hook runs in a worker thread,
so it may block (Django's ORM, a session store). An upgrade that carries a token (an
``Authorization`` header or a ``bearer`` subprotocol entry) is authenticated by the
token as on any secured route and the hook is not called: scripts and other services
keep using `app.auth.issue` tokens or the API key on the same endpoint.

**Cross-site WebSocket hijacking.** Browsers send cookies with a WebSocket upgrade to
any site, whichever page opened it, and the same-origin policy does not apply to
WebSockets. So before the hook runs, the upgrade must carry exactly one ``Origin`` that
is the request's own host (its netloc equals the ``Host`` header) or is listed in
``ALLOWED_ORIGINS``; else 403 ``origin_not_allowed``. This holds even when origins are
otherwise open: a hook is presumed to read ambient credentials. A missing ``Origin`` is
refused too (fail closed, as Django Channels' origin validator does): non-browser
clients send a token, or an ``Origin`` header.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..auth import Principal, offered_subprotocols
from ..auth.tokens import BEARER_SUBPROTOCOL
from ..errors import HTTPError, Unauthorized
from .request import Request
from .routing import Handler

if TYPE_CHECKING:
    from .app import App

Identity = Principal | str | Mapping[str, Any] | None
ConnectHook = Callable[[Request], Identity | Awaitable[Identity]]
HOOK_ATTR = "__pubsocket_authenticate__"


def set_connect_hook(handler: Handler, hook: ConnectHook) -> Handler:
    """Attach `hook` to the WebSocket route `handler` (read by `App.handle`)."""
    setattr(handler, HOOK_ATTR, hook)
    return handler


def connect_hook(handler: Handler) -> ConnectHook | None:
    """The connection hook attached to `handler`, if any."""
    hook: ConnectHook | None = getattr(handler, HOOK_ATTR, None)
    return hook


def carries_token(request: Request) -> bool:
    """Whether the upgrade presents a token (header or ``bearer`` subprotocol entry)."""
    if request.headers.getall("authorization"):
        return True
    offered = offered_subprotocols(request.headers.getall("sec-websocket-protocol"))
    return BEARER_SUBPROTOCOL in offered


async def authenticate_with_hook(app: App, request: Request, hook: ConnectHook) -> Principal:
    """The principal for an upgrade without a token: Origin check, then `hook`.

    Raises `HTTPError` (403 ``origin_not_allowed``; 401 when the hook returns None; what
    the hook raised) before any upgrade; a 401 is of kind ``connect_hook``, the name
    the app logs it under. A hook returning another type is a programming
    error: `TypeError`, which the app answers with 500 and logs.
    """
    if not origin_allowed(request, app.settings.allowed_origins):  # the app logs the 403
        raise HTTPError(403, "origin_not_allowed", "origin not allowed")
    try:
        if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
                getattr(hook, "__call__", None)):  # noqa: B004 (an async __call__ object)
            result = await hook(request)  # type: ignore[misc]
        else:
            result = await asyncio.to_thread(hook, request)
            if inspect.isawaitable(result):  # a plain def returning an awaitable
                result = await result
    except Unauthorized as exc:  # the hook's own 401: logged as the hook's refusal
        exc.kind = "connect_hook"
        raise
    principal = to_principal(result)
    if principal is None:  # the app logs the 401 (`connect_hook`)
        raise Unauthorized("a signed-in session or a valid token is required",
                           "connect_hook")
    return principal


def to_principal(result: object) -> Principal | None:
    """The principal a hook's `result` describes (module docstring), None for a refusal."""
    if result is None or result is False or result == "":
        return None
    if isinstance(result, Principal):
        return result
    if isinstance(result, str):
        return Principal.from_claims({"sub": result})
    if isinstance(result, Mapping):
        return Principal.from_claims(result)
    raise TypeError(f"a connection hook returned {type(result).__name__}; expected a "
                    "Principal, a user id (str), a claims mapping or None")


def origin_allowed(request: Request, allowed: frozenset[str] | tuple[str, ...] | Any) -> bool:
    """Exactly one ``Origin``, and it is the request's own host or in `allowed`."""
    origins = request.headers.getall("origin")
    if len(origins) != 1:
        return False
    origin = origins[0].strip()
    if allowed and origin in allowed:
        return True
    parts = urlsplit(origin)
    hosts = request.headers.getall("host")
    return (parts.scheme in ("http", "https") and len(hosts) == 1 and bool(parts.netloc)
            and parts.netloc.lower() == hosts[0].strip().lower())
