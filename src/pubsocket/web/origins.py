"""The Origin policy of WebSocket upgrades: same site by default. Pure, no I/O.

A browser sends ``Origin`` with every WebSocket upgrade, and sends the site's cookies
with it whatever page opened the socket; a page on another site can therefore open a
socket to this server as its visitor (cross-site WebSocket hijacking). So, by default
(`PUBSOCKET_ALLOWED_ORIGINS` unset), an upgrade is allowed when:

* it has no ``Origin`` header (not a browser: websockets, curl, the SDKs), or
* the origin's ``host[:port]`` equals the request's ``Host`` header (case-insensitive;
  the page is served by this server, as every page pubsocket serves is).

With a list (``https://app.example.com,https://admin.example.com``) the origins listed
are allowed as well, exactly as written (scheme://host[:port], no path); ``*`` in the
list allows any origin (the old default). ``Origin: null`` (sandboxed frames, file://
pages) is same-site to nothing: allowed only when listed. The scheme is not compared
with the request's (as gorilla/websocket's same-origin check): behind a TLS-terminating
proxy the request arrives over plain HTTP while the page is ``https://``. A proxy that
rewrites ``Host`` must pass it through, or the site's origin must be listed.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

ANY = "*"


def origin_allowed(origin: str | None, host: str | None, allowed: Collection[str]) -> bool:
    """Whether an upgrade with `origin` (its ``Origin`` header, None when absent) to the
    server it reached as `host` (its ``Host`` header) may proceed under `allowed` (the
    configured list; empty: same site only)."""
    if origin is None or ANY in allowed or origin in allowed:
        return True
    if not host or origin == "null":
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return False
    return parts.netloc.lower() == host.strip().lower()
