"""The ``pubsocket.v1`` HTTP fallback on the hub's endpoint path P (docs/protocol.md "HTTP
fallback"): for a client whose WebSocket is refused (a proxy stripping ``Upgrade``).

- ``POST P?transport=http_stream`` opens a stream. Auth is the WebSocket upgrade's on
  P: a ``Bearer`` token (``Authorization``) when the endpoint is secured or a token is
  presented, else the app's `authenticate=` hook (web/connect_auth.py); the upgrade's
  Origin rule; the client's HTTP rate limit (429 with ``Retry-After``). Body: a JSON
  array of v1 commands to run first (may be ``[]``), at most `max_message_size` bytes
  (413). Reply 200 ``application/x-ndjson``: one v1 message per line, exactly a
  WebSocket text frame's bytes; the first is ``{"type":"transport","transport":
  "http_stream","session":S,"node":N}``.
- ``POST P?transport=emulation`` with ``{"session","node","data":[command, ...]}``
  hands the commands to that session, on this node or through the broker (hub/relay.py):
  204; 404 ``unknown_session`` when this node is the one named and has no such session,
  or when no node received it (the one named is gone or cut from the broker): the
  client reconnects; 400 malformed or more than `max_frame_commands` commands; 413
  larger than twice the message size plus 4 KiB; 429 past the HTTP rate limit.

Each command reaches the session as one WebSocket message would (`Stream.feed`): the
same rate limit, message size, protocol-error budget and topic permissions. The stream
ends when the session does; its last line is ``{"type":"close","code":C,"reason":R}``,
the close frame's code and reason (a stream has no close frame). Only the native server
streams (ASGI: 501).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..codecs import V1
from ..errors import CloseCode, HTTPError
from ..hub import Session
from .app import App
from .connect_auth import authenticate_with_hook, connect_hook
from .emulation import (
    body_limit,
    check_origin,
    check_routed,
    check_stream,
    open_session,
    parse_json,
)
from .request import Request
from .response import Response, ResponseFactory
from .routing import AUTH_ATTR, Handler, mark_auth
from .streaming import Stream, StreamResponse

HEADERS = [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")]


def farewell(code: int, reason: str) -> bytes:
    """The stream's last line: the close a WebSocket would have sent."""
    return orjson.dumps({"type": "close", "code": code, "reason": reason})


def fallback_handler(app: App, endpoint: Handler) -> Handler:
    """The ``POST P`` handler beside `endpoint`, the hub's WebSocket handler on P (its
    auth marker and connection hook, read per request, are the fallback's too)."""

    async def http_fallback(request: Request, response: ResponseFactory) -> Response:
        transport = request.params.get("transport")
        if transport == "http_stream":
            return await _open(app, endpoint, request)
        if transport == "emulation":
            return await _emulation(app, request, response)
        raise HTTPError(400, "bad_transport", "transport is http_stream or emulation")

    # A presented Bearer token is checked (and charged) by the app like any route's;
    # the rest of the upgrade's rules run in `_open`.
    return mark_auth(http_fallback, "noauth")


async def _open(app: App, endpoint: Handler, request: Request) -> StreamResponse:
    settings = app.settings
    if not request.principal.authenticated:  # no token (one would be checked by now)
        hook = connect_hook(endpoint)
        if hook is not None:
            request.principal = await authenticate_with_hook(app, request, hook)
        elif getattr(endpoint, AUTH_ATTR, None) == "secured":
            app._authenticate(request)  # 401 like the upgrade's
        check_stream(app, request)
    else:
        check_origin(app, request)
    size = settings.max_message_size
    body = request.raw_body or b"[]"
    if size and len(body) > size:
        raise HTTPError(413, "body_too_large", "the opening commands are too large")
    commands = _commands(body, settings.max_frame_commands)
    principal = request.principal

    async def start(stream: Stream) -> None:
        session = Session(app.hub, stream, settings, codec=V1, principal=principal,
                          authenticator=app.auth, address=request.client, wires=stream.wires)
        stream.farewell = farewell
        session_id = open_session(app, stream, session, size,
                                  lambda data: _feed_batch(stream, data))
        stream.deliver(stream.wires(V1).frame(orjson.dumps({
            "type": "transport", "transport": "http_stream", "session": session_id,
            "node": app.hub.relay.node})))
        for command in commands:
            stream.feed(orjson.dumps(command))

    return StreamResponse(content_type="application/x-ndjson", headers=list(HEADERS),
                          start=start, framing="ndjson")


async def _emulation(app: App, request: Request, response: ResponseFactory) -> Response:
    if not request.principal.authenticated:
        app.limits.charge(request)  # the session id is the credential; the peer pays
    limit = body_limit(app)
    if limit and len(request.raw_body) > limit:
        raise HTTPError(413, "body_too_large", "the emulation request is too large")
    body = parse_json(request.raw_body, dict)
    node, session_id, data = body.get("node"), body.get("session"), body.get("data")
    if not (isinstance(node, str) and isinstance(session_id, str) and isinstance(data, list)):
        raise HTTPError(400, "bad_field", "node and session are strings, data an array")
    cap = app.settings.max_frame_commands
    if cap and len(data) > cap:
        raise HTTPError(400, "too_many_commands", f"at most {cap} commands per request")
    check_routed(await app.hub.relay.route(node, session_id, orjson.dumps(data)), request)
    return response(None, 204)


def _commands(body: bytes, cap: int) -> list[Any]:
    commands: list[Any] = parse_json(body, list, shape="a JSON array of commands")
    if cap and len(commands) > cap:
        raise HTTPError(400, "too_many_commands", f"at most {cap} commands per request")
    return commands


def _feed_batch(stream: Stream, data: bytes) -> None:
    """A relayed ``data`` array: each command is one message for the session."""
    try:
        commands = orjson.loads(data)
    except orjson.JSONDecodeError:
        commands = None
    if not isinstance(commands, list):  # a peer node checked it: never from a client
        stream.close_nowait(CloseCode.INVALID_DATA, "bad relayed commands")
        return
    for command in commands:
        stream.feed(orjson.dumps(command))
