"""The socket side of `Client`: open a ``pubsocket.v1`` connection and read it.

Stateless helpers; `Client` (connection.py) owns the state and passes what each needs.

* `get_token(token)`: the token to send now (a callable is asked again on every call).
* `open_ws(url, token, ...)`: one handshake offering ``pubsocket.v1`` (the token as a
  Bearer header). Raises what websockets raises (`InvalidStatus` for an HTTP refusal,
  `InvalidHandshake`, `OSError`, `TimeoutError`), or `ConnectFailed` when the server
  does not pick ``pubsocket.v1``.
* `read_frames(ws, dispatch, silence)`: returns once the connection closed, having
  handed every text frame holding a JSON object to `dispatch`, in order (binary frames
  are skipped, frames that are not JSON skipped with a warning). When `silence()`
  gives a number of seconds and nothing arrives for that long, the link is taken as
  dead (a half-open TCP connection sees no close): the socket is aborted and it
  returns, as for any drop (close code 1006).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from .errors import ConnectFailed

log = logging.getLogger("pubsocket.client")

SUBPROTOCOL = "pubsocket.v1"
Token = str | Callable[[], str | Awaitable[str]] | None


async def get_token(token: Token) -> str | None:
    """`token` itself, or what the (sync or async) callable returns now."""
    if token is None or isinstance(token, str):
        return token
    result = token()
    return await result if inspect.isawaitable(result) else result


async def open_ws(url: str, token: str | None, *, open_timeout: float,
                  max_size: int | None) -> ClientConnection:
    """One opening handshake for ``pubsocket.v1``; see the module docstring for errors."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ws = await ws_connect(url, subprotocols=[Subprotocol(SUBPROTOCOL)],
                          additional_headers=headers, open_timeout=open_timeout,
                          max_size=max_size, close_timeout=2)
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close()
        raise ConnectFailed(f"{url} does not speak {SUBPROTOCOL}")
    return ws


def refusal_reason(response: Any) -> str:
    """The ``message`` of a refused upgrade's JSON body (``{"error", "message"}``, the
    server's error format), or "" when the body is not one (a proxy's page, say)."""
    try:
        body = orjson.loads(response.body or b"")
    except (orjson.JSONDecodeError, TypeError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return message[:200] if isinstance(message, str) else ""


def never() -> float | None:
    return None


async def read_frames(ws: ClientConnection, dispatch: Callable[[dict[str, Any]], None],
                      silence: Callable[[], float | None] = never) -> None:
    """Hand every JSON object frame to `dispatch` until the connection closes or is
    silent for `silence()` seconds (read before each frame; None: wait forever)."""
    while True:
        bound = silence()
        try:
            async with asyncio.timeout(bound):
                raw = await ws.recv()  # cancel-safe: a timeout loses no frame
        except ConnectionClosed:
            return
        except TimeoutError:
            log.info("nothing received for %.1f s: the link is dead, reconnecting", bound)
            ws.transport.abort()
            return
        if isinstance(raw, bytes):
            continue  # the protocol is text frames only
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("ignored a frame that is not JSON")
            continue
        if isinstance(frame, dict):
            dispatch(frame)
