"""CORS for the browser transports served as plain HTTP: Centrifugo's bidirectional
emulation (``/connection/http_stream``, ``/connection/sse``, ``/emulation``) and
unidirectional SSE (``/connection/uni_sse``), as Centrifugo allows them by its
``allowed_origins``.

A WebSocket needs no CORS, but a page's ``fetch`` and ``EventSource`` to another origin
(a page on ``https://app.example.com``, pubsocket on ``https://rt.example.com``) get
their response only when it allows the page's origin, and a ``POST`` with a JSON or
Protobuf body is first preflighted with ``OPTIONS``. The origins allowed are the
upgrade's (web/origins.py: the same site, plus ``PUBSOCKET_ALLOWED_ORIGINS``, ``*`` for
any), so a page that may open a WebSocket may use these transports too, and no other:

* every response on a path registered with `allow_cross_origin`, to a request whose
  ``Origin`` is allowed, carries ``Access-Control-Allow-Origin: <that origin>`` (errors
  too, so the page reads a 404 or 429 instead of a network error); ``Vary: Origin``
  whenever the request has an ``Origin``;
* ``OPTIONS`` on such a path (the preflight) answers 204 with the methods, the request
  headers the SDKs send (`ALLOW_HEADERS`) and a cache lifetime (`MAX_AGE`, so a client
  preflights its POSTs once per 10 minutes, not once per command); an ``Origin`` not
  allowed is 403 ``origin_not_allowed`` without CORS headers, and the browser never
  sends the request. Each preflight is charged to the HTTP rate limit (429).
* never ``Access-Control-Allow-Credentials``: these endpoints authenticate in band (the
  connect command's token, the stream's unguessable session id), never by cookie, so a
  page on another origin sends none (centrifuge-js fetches with ``credentials:
  'same-origin'``, an ``EventSource`` without ``withCredentials``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Final

from ..errors import HTTPError
from .origins import origin_allowed
from .request import Request
from .response import Response, ResponseFactory
from .routing import mark_auth

if TYPE_CHECKING:  # web/app.py imports `cors_headers`
    from .app import App

ALLOW_HEADERS: Final = "Content-Type, Accept, Last-Event-ID"
MAX_AGE: Final = "600"  # seconds a browser may reuse a preflight (Chromium caps it at 7200)


def cors_headers(request: Request, allowed: Collection[str]) -> list[tuple[str, str]]:
    """The CORS headers of a response to `request` on a cross-origin path: ``Vary`` and,
    when its ``Origin`` passes the Origin rule under `allowed` (the configured list),
    ``Access-Control-Allow-Origin``."""
    origin = request.headers.get("origin")
    if origin is None:
        return []
    if not origin_allowed(origin, request.headers.get("host"), allowed):
        return [("Vary", "Origin")]
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]


def allow_cross_origin(app: App, path: str, methods: Iterable[str]) -> None:
    """Serve `path` (already routed for `methods`) to pages on the allowed origins: its
    responses get `cors_headers` and ``OPTIONS`` answers the preflight (module
    docstring)."""
    app.cors_paths.add(path.rstrip("/") or "/")
    if app.router.match("OPTIONS", path) is not None:
        return
    allow = ", ".join([*methods, "OPTIONS"])

    async def preflight(request: Request, response: ResponseFactory) -> Response:
        app.limits.charge(request)
        origin = request.headers.get("origin")
        if origin is not None and not origin_allowed(
                origin, request.headers.get("host"), app.settings.allowed_origins):
            raise HTTPError(403, "origin_not_allowed", "origin not allowed")
        return response(None, 204, headers={
            "Access-Control-Allow-Methods": allow, "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE, "Allow": allow})

    app.route("OPTIONS", path)(mark_auth(preflight, "noauth"))
