"""The opening handshake (RFC 6455 §4.2), validated with websockets' header parsers.

websockets' `ServerProtocol.accept` does the same checks but costs 4-9x more per
handshake (it builds a second protocol object, a Headers structure and a Date header);
this does them with the library's own parsers and `accept_key`, which keeps
handshakes/s above Node ws. Numbers and machine: docs/design.md, bench/micro_handshake.py.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from websockets.exceptions import InvalidHeader
from websockets.headers import parse_connection, parse_subprotocol, parse_upgrade
from websockets.utils import accept_key

from ..auth.tokens import strip_bearer
from ..errors import HTTPError
from ..web.request import Headers

_BAD = "invalid WebSocket handshake"


def accept_handshake(
    method: str, headers: Headers, supported: Sequence[str], extensions: str | None = None
) -> tuple[bytes, str | None]:
    """The 101 response for a valid upgrade request and the chosen subprotocol.

    Raises `HTTPError`: 426 when the request is not a version-13 WebSocket upgrade,
    400 for a malformed key or header. The subprotocol is the first one in `supported`
    that the client offered; offering none (or only others) is not an error. A
    ``bearer`` entry and the token after it are credentials, never selectable.
    `extensions` is the negotiated ``Sec-WebSocket-Extensions`` value (server/deflate.py).
    """
    if method != "GET":
        raise HTTPError(405, "method_not_allowed", "WebSocket upgrades use GET")
    try:
        connection = [o.lower() for h in headers.getall("connection")
                      for o in parse_connection(h)]
        upgrade = [str(p).lower() for h in headers.getall("upgrade") for p in parse_upgrade(h)]
        offered = [str(p) for h in headers.getall("sec-websocket-protocol")
                   for p in parse_subprotocol(h)]
    except InvalidHeader:
        raise HTTPError(400, "bad_handshake", _BAD) from None
    if "upgrade" not in connection or upgrade != ["websocket"]:
        raise HTTPError(426, "upgrade_required", "a WebSocket upgrade is required")
    if headers.getall("sec-websocket-version") != ["13"]:
        raise HTTPError(426, "upgrade_required", "WebSocket version 13 is required")
    keys = headers.getall("sec-websocket-key")
    if len(keys) != 1:
        raise HTTPError(400, "bad_handshake", _BAD)
    try:
        raw_key = base64.b64decode(keys[0].encode(), validate=True)
    except binascii.Error:
        raise HTTPError(400, "bad_handshake", _BAD) from None
    if len(raw_key) != 16:
        raise HTTPError(400, "bad_handshake", _BAD)
    offered = strip_bearer(offered)  # never echo a token back as the subprotocol
    chosen = next((s for s in supported if s in offered), None)
    head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(keys[0])}\r\n")
    if chosen is not None:
        head += f"Sec-WebSocket-Protocol: {chosen}\r\n"
    if extensions is not None:
        head += f"Sec-WebSocket-Extensions: {extensions}\r\n"
    return (head + "\r\n").encode(), chosen
