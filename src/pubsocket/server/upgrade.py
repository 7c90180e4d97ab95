"""`NativeUpgrader`: the WebSocket upgrade of a request on the native server's
`HttpProtocol` (server/http.py).

A handler's `accept` validates the handshake (server/handshake.py), negotiates
permessage-deflate when compression is on (server/deflate.py), answers 101 and hands
the transport to a `WSConnection` through `HttpProtocol.switch_to_websocket`; the access
log gets the 101 then, and the close later from the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from websockets.protocol import Side
from websockets.typing import Subprotocol

from ..web.request import Request
from . import access
from .deflate import negotiate as negotiate_deflate
from .frames import FrameProtocol
from .handshake import accept_handshake
from .websocket import WSConnection

if TYPE_CHECKING:  # http.py makes upgraders: a runtime import would be circular
    from .http import HttpProtocol


class NativeUpgrader:
    """The `pubsocket.web.Upgrader` of the native server."""

    def __init__(self, http: HttpProtocol, request: Request) -> None:
        self._http = http
        self._request = request
        self._accepted: WSConnection | None = None
        self._started = http.state.loop.time()  # for the access log

    @property
    def accepted(self) -> WSConnection | None:
        """The connection once `accept` succeeded."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """WebSocket connections (and SSE streams) open in this process."""
        state = self._http.state
        return len(state.websockets) + len(state.streams)

    async def accept(
        self,
        subprotocols: Sequence[str] = (),
        max_message_size: int | None = None,
        max_fragments: int | None = None,
    ) -> WSConnection:
        """Validate the handshake, answer 101 and return the open connection."""
        if self._accepted is not None:
            return self._accepted
        settings = self._http.state.settings
        deflate = (negotiate_deflate(self._request.headers.getall("sec-websocket-extensions"))
                   if settings.compression == "deflate" else None)
        head, chosen = accept_handshake(self._request.method, self._request.headers,
                                        subprotocols, deflate[0] if deflate else None)
        proto = FrameProtocol(
            Side.SERVER,
            max_size=(settings.max_message_size if max_message_size is None
                      else max_message_size) or None,
        )
        if deflate is not None:  # inbound inflated by websockets (server/deflate.py)
            proto.extensions = [deflate[1]]
            proto.min_compress = settings.compression_min_size
        proto.subprotocol = Subprotocol(chosen) if chosen is not None else None
        self._accepted = conn = self._http.switch_to_websocket(
            head, proto,
            settings.max_fragments if max_fragments is None else max_fragments,
        )
        if settings.access_log:
            request, peer = self._request, self._request.client
            now = self._http.state.loop.time()
            access.request(request.method, request.path, 101, now - self._started, peer)
            conn.access = (request.path, peer, now)
        return conn
