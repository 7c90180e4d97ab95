"""Routes and the `Router` that matches them. ``{name}`` captures one path segment.

Matching runs on the raw (percent-encoded) path, so ``%2F`` inside a parameter never
makes a new segment; each captured value is then percent-decoded as UTF-8
(``/hello/caf%C3%A9`` gives ``café``, ``/files/a%2Fb`` gives ``a/b``). A value that
does not decode to valid UTF-8 is a 400 ``bad_path`` refusal, never replacement
characters a handler would have to notice.

Auth markers live on the handler function (set by `secured()` / `noauth()`) and are read
at dispatch, so the decorators work in either order above ``@get(...)``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from ..errors import HTTPError

Handler = Callable[..., Awaitable[Any]]
# "token": always needs a token, like a write route, but (unlike "secured") an app
# without secrets still starts: the built-in read APIs (GET /api/history) use it.
# "in_band": the handler authenticates inside the connection (the Centrifuge connect
# command), so the upgrade needs no token; like "secured", an app without secrets
# refuses to start.
AuthMode = Literal["secured", "noauth", "token", "in_band"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
AUTH_ATTR = "__pubsocket_auth__"
# Set by `pubsub()` on the hub's WebSocket endpoint: the protocol it speaks ("plain":
# plain JSON and pubsocket.v1; "centrifuge"). `pubsocket serve` names these endpoints
# in its banner (a hand-written WebSocket route cannot be told from a page until called).
PROTOCOL_ATTR = "__pubsocket_protocol__"


def _compile(path: str) -> re.Pattern[str]:
    if not path.startswith("/"):
        raise ValueError(f"route path must start with '/': {path!r}")
    path = path.rstrip("/") or "/"
    pattern, pos = "", 0
    for m in _PARAM.finditer(path):
        pattern += re.escape(path[pos : m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    pattern += re.escape(path[pos:])
    return re.compile(f"^{pattern}/?\\Z" if path != "/" else "^/\\Z")


@dataclass(frozen=True, slots=True)
class Route:
    """One method + path pattern bound to a handler."""

    method: str
    path: str
    handler: Handler
    regex: re.Pattern[str]

    def requires_auth(self) -> bool:
        """tina4 semantics: writes need a token unless `noauth`; reads only when `secured`."""
        mode: AuthMode | None = getattr(self.handler, AUTH_ATTR, None)
        if mode in ("secured", "token"):
            return True
        if mode in ("noauth", "in_band"):
            return False
        return self.method in WRITE_METHODS


class Router:
    """An ordered list of routes; the first match wins. Static paths are looked up first."""

    def __init__(self) -> None:
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: list[Route] = []

    def add(self, method: str, path: str, handler: Handler) -> Route:
        """Register `handler` for `method` `path`; a duplicate is a `ValueError`."""
        route = Route(method.upper(), path, handler, _compile(path))
        if "{" in path:
            shape = _PARAM.sub("{}", path.rstrip("/"))
            if any(r.method == route.method and _PARAM.sub("{}", r.path.rstrip("/")) == shape
                   for r in self._dynamic):
                raise ValueError(f"duplicate route {method.upper()} {path}")
            self._dynamic.append(route)
        else:
            key = (route.method, path.rstrip("/") or "/")
            if key in self._static:
                raise ValueError(f"duplicate route {method.upper()} {path}")
            self._static[key] = route
        return route

    def remove(self, method: str, path: str) -> Route | None:
        """Unregister the route `add(method, path, ...)` made (same method, same path or
        parameter shape) and return it; None when there is none. With `add`, this is how
        a mount replaces an app's route (web/centrifugo_mount.py logs what it replaced)."""
        method = method.upper()
        if "{" not in path:
            return self._static.pop((method, path.rstrip("/") or "/"), None)
        shape = _PARAM.sub("{}", path.rstrip("/"))
        for i, route in enumerate(self._dynamic):
            if route.method == method and _PARAM.sub("{}", route.path.rstrip("/")) == shape:
                return self._dynamic.pop(i)
        return None

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for `method` `path` and its path parameters, or None."""
        route = self._static.get((method, path.rstrip("/") or "/"))
        if route is not None:
            return route, {}
        for route in self._dynamic:
            if route.method == method:
                m = route.regex.match(path)
                if m:
                    return route, {k: _decode(v) for k, v in m.groupdict().items()}
        return None

    def allows(self, path: str) -> bool:
        """True when some method has a route for `path` (to answer 405 instead of 404)."""
        return any(r.regex.match(path) for r in (*self._static.values(), *self._dynamic))

    def __iter__(self) -> Any:
        return iter((*self._static.values(), *self._dynamic))


def _decode(segment: str) -> str:
    """Percent-decode one path segment as UTF-8 (``+`` stays ``+``: this is a path)."""
    if "%" not in segment:
        return segment
    try:
        return unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "bad_path", "a path parameter is not valid UTF-8") from None


def mark_auth(handler: Handler, mode: AuthMode) -> Handler:
    """Set the auth marker on `handler` and return it unchanged."""
    setattr(handler, AUTH_ATTR, mode)
    return handler
