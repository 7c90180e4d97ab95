"""The ops page: ``GET /admin`` (a static shell) and ``GET /admin/stats`` (API key only).

The shell holds no data, so it is open; the page asks for the API key, keeps it in the
tab's sessionStorage and polls the stats once a second. ``/admin/stats`` needs a token
(401 without one or with a bad one) and only the API key may read it (a user JWT is a
403 ``forbidden``). The publish form on the page posts to ``POST /api/publish``, which
`pubsub()` mounts; `admin()` mounts nothing else.
"""

from __future__ import annotations

import html
import os
import socket
import time
from importlib import resources
from typing import Any

from ..errors import HTTPError
from .app import App
from .decorators import current_app
from .recent import install
from .request import Request
from .response import Response, ResponseFactory
from .routing import Handler, mark_auth
from .snapshot import snapshot

TOP_TOPICS = 50
TOP_TOPICS_EVERY = 1.0  # seconds a computed list of the busiest topics is served
TOP_TOPICS_FRESH = 1000  # up to this many topics the list is computed for every poll
_ASSETS = {"": ("admin.html", "text/html; charset=utf-8"),
           "/admin.js": ("admin.js", "text/javascript; charset=utf-8"),
           "/admin.css": ("admin.css", "text/css; charset=utf-8")}
# The page holds the API key: no framing, no inline or foreign scripts, no referrer.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
}


def admin(path: str = "/admin", *, app: App | None = None) -> Handler:
    """Mount the ops page at ``GET path`` (its script and style beside it) and its data at
    ``GET path/stats``; return the stats handler. Installs the process's recent-errors
    ring (`web.recent`) on first use."""
    target = app or current_app()
    base = path.rstrip("/")
    if not base.startswith("/"):
        raise ValueError(f"admin path must start with '/': {path!r}")
    recent = install()
    started = [time.monotonic()]
    # The busiest topics walk every topic (O(topics), ~13 ms at 100,000): past
    # TOP_TOPICS_FRESH topics computed at most once a second however many pages poll.
    top: list[Any] = [0.0, []]  # [computed at (monotonic), the list]

    async def reset_uptime() -> None:
        started[0] = time.monotonic()

    target.on_startup(reset_uptime)
    for suffix, (name, ctype) in _ASSETS.items():
        target.get(base + suffix)(_asset(name, ctype, base))

    async def admin_stats(request: Request, response: ResponseFactory) -> Response:
        """The numbers, the busiest topics and the recent WARNING+ log records."""
        if not request.principal.is_api_key:
            raise HTTPError(403, "forbidden", "only the API key may read the ops stats")
        snap = snapshot(target)
        presence = target.hub.presence
        now = time.monotonic()
        if target.hub.topic_count <= TOP_TOPICS_FRESH or now - top[0] >= TOP_TOPICS_EVERY:
            top[:] = [now, [{"topic": t, "subscribers": n}
                            for t, n in target.hub.busiest_topics(TOP_TOPICS)]]
        body: dict[str, Any] = {
            **snap,
            "topics": {"count": snap["topics"], "top": top[1]},
            "presence": {"enabled": bool(presence.patterns), "patterns": presence.patterns,
                         "events": presence.events},
            "uptime_seconds": time.monotonic() - started[0],
            "time": time.time(),
            "node": {"host": socket.gethostname(), "pid": os.getpid()},
            "recent_errors": recent.records(),
        }
        return response(body, headers={"Cache-Control": "no-store"})

    target.get(base + "/stats")(mark_auth(admin_stats, "token"))
    return admin_stats


def _asset(name: str, content_type: str, base: str) -> Handler:
    # Read once at mount: a missing file is a packaging bug, found at startup. The page
    # names its script, style and stats by their full path, so /admin/ works like /admin:
    # the mount path, under the prefix the app itself is mounted at (`request.root_path`,
    # set by the host: uvicorn --root-path, Starlette's Mount), filled in per request.
    body = resources.files("pubsocket").joinpath("static", name).read_bytes()
    pages: dict[str, bytes] = {}

    def render(root: str) -> bytes:
        if root not in pages:
            if len(pages) >= 8:  # a host has one or two prefixes; never grow unbounded
                pages.clear()
            pages[root] = (body.replace(b"{{base}}", html.escape(root + base).encode())
                           .replace(b"{{root}}", html.escape(root).encode()))
        return pages[root]

    async def page(request: Request, response: ResponseFactory) -> Response:
        return response(render(request.root_path.rstrip("/")), content_type=content_type,
                        headers=_PAGE_HEADERS)

    return mark_auth(page, "noauth")
