"""The access log (``PUBSOCKET_ACCESS_LOG=true``): one line per request and per
WebSocket close on the ``pubsocket.access`` logger, at INFO.

``GET /api/history 200 1.3ms 127.0.0.1:51234`` for a request (the path without its
query string, which may carry tokens or personal data); a refused upgrade is a request
line too (``GET /ws/chat 401 ...``); an accepted one logs ``GET /ws/chat 101`` and,
when it ends, ``ws /ws/chat closed 1000 12.5s 127.0.0.1:51234`` with the close code
(1006: the peer vanished without one). Headers, tokens and payloads are never logged.
"""

from __future__ import annotations

import logging

log = logging.getLogger("pubsocket.access")


def enable() -> None:
    """Make the access logger emit at INFO whatever the package's log level is."""
    log.setLevel(logging.INFO)


def peer_text(peer: tuple[str, int] | None) -> str:
    """``host:port`` of a peer, or ``-`` when unknown."""
    return f"{peer[0]}:{peer[1]}" if peer else "-"


def request(method: str, path: str, status: int, seconds: float,
            peer: tuple[str, int] | None) -> None:
    """Log one answered request (`path` without the query string)."""
    log.info("%s %s %d %.1fms %s", method, path, status, seconds * 1000, peer_text(peer))


def closed(path: str, code: int, seconds: float, peer: tuple[str, int] | None) -> None:
    """Log the end of one WebSocket connection with its close code."""
    log.info("ws %s closed %d %.1fs %s", path, code, seconds, peer_text(peer))
