"""Centrifugo's bidirectional emulation, as centrifuge-js 5.x uses it (docs/centrifuge.md
"HTTP-streaming and SSE").

A client that cannot open a WebSocket keeps one streamed response open for what the
server sends, and POSTs its commands:

- ``POST /connection/http_stream``: body the client's first commands (its connect,
  encoded as on a WebSocket: JSON lines, or varint-delimited Protobuf when the
  ``Content-Type`` is ``application/octet-stream``), at most `connect_message_size`
  bytes (413). Reply 200 with a body of JSON lines (one Centrifuge reply per line) or
  varint-delimited Protobuf replies.
- ``GET /connection/sse?cf_connect=<JSON commands>``: the same, JSON only, as SSE
  events (``data: <reply>``); no ``cf_connect`` is 400.
- ``POST /emulation``: body ``{"session", "node", "data": "<JSON commands>"}`` (JSON)
  or a Protobuf ``EmulationRequest``; 204 once handed to the session, on this node or
  through the broker (the hub's relay, hub/relay.py); 404 when this node is the one
  named and the session is gone, or when no node received it (the one named is gone
  or cut from the broker): the SDK reconnects; 400 malformed; 413 larger than
  twice the message size (JSON escaping) plus 4 KiB; 429 past the client's HTTP rate
  limit.

The connect reply names the stream's ``session`` (a random, unguessable id: knowing it
is what lets a POST reach the session) and this process's ``node``. The session is the
endpoint's ordinary Centrifuge session (the connect gate, token checks, permissions,
rate limit, command count, message size, pings): a POSTed command reaches it exactly
as a WebSocket message would (`Stream.feed`). The stream ends with a disconnect push.
Both stream routes are charged to the HTTP rate limit, count against ``MAX_CONNECTIONS``
and pass the upgrade's Origin rule, as ``/emulation`` does; the three routes answer
pages on the other origins that rule allows (CORS, web/cors.py). Only the native server
streams: under ASGI the stream routes answer 501 and ``/emulation`` finds no session
(404).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Literal

import orjson

from ..auth import Authenticator
from ..errors import HTTPError
from ..hub import Hub, Session
from ..hub.relay import RouteResult
from ..log import refusals
from ..protocols.centrifuge import Endpoint, Gate
from .app import App
from .centrifuge_wire import ProtobufEndpoint
from .cors import allow_cross_origin
from .origins import origin_allowed
from .request import Request
from .response import Response, ResponseFactory
from .routing import Handler, mark_auth
from .streaming import Stream, StreamResponse

Framing = Literal["sse", "ndjson", "varint"]
HTTP_STREAM_PATH = "/connection/http_stream"
SSE_PATH = "/connection/sse"
EMULATION_PATH = "/emulation"
PROTOBUF = "application/octet-stream"
STREAM_HEADERS = [("Cache-Control", "private, no-cache, no-store, must-revalidate, max-age=0"),
                  ("X-Accel-Buffering", "no")]


class Emulated:
    """The stream's listener: the session, plus the relay registration it ends."""

    __slots__ = ("_hub", "_session", "session_id")

    def __init__(self, hub: Hub, session: Session, session_id: str) -> None:
        self._hub = hub
        self._session = session
        self.session_id = session_id

    def on_message(self, message: str | bytes) -> None:
        self._session.on_message(message)

    def on_close(self) -> None:
        self._hub.relay.unregister(self.session_id)
        self._session.on_close()


def open_session(app: App, stream: Stream, session: Session, max_size: int,
                 feed: Callable[[bytes], None] | None = None) -> str:
    """Attach `session` to `stream` and register `feed` (default: ``stream.feed``) with
    the hub's relay under a new random session id (returned); fed messages are at most
    `max_size` bytes until the session raises the limit."""
    session_id = secrets.token_urlsafe(18)
    stream.attach(Emulated(app.hub, session, session_id))
    stream.set_max_message_size(max_size)
    app.hub.relay.register(session_id, feed or stream.feed)
    return session_id


def check_origin(app: App, request: Request) -> None:
    """The upgrade's Origin rule (web/origins.py): 403 ``origin_not_allowed``, which
    the app logs (`App._dispatch` logs every 403 once; not here too)."""
    if not origin_allowed(request.headers.get("origin"), request.headers.get("host"),
                          app.settings.allowed_origins):
        raise HTTPError(403, "origin_not_allowed", "origin not allowed")


def check_stream(app: App, request: Request) -> None:
    """What an upgrade checks before a stream opens: the Origin rule (403) and the
    client's HTTP rate limit (429)."""
    check_origin(app, request)
    app.limits.charge(request)


def body_limit(app: App) -> int:
    """The largest POSTed command body: twice the message size (JSON-escaped) + 4 KiB."""
    size = app.settings.max_message_size
    return 2 * size + 4096 if size else 0


def mount_emulation(app: App, endpoint: Endpoint, protobuf: ProtobufEndpoint,
                    pre_connect: int, *, secured: bool,
                    authenticator: Authenticator | None = None) -> None:
    """Mount the three routes (module docstring) for `endpoint`, unless already routed.
    `pre_connect` bounds the opening request's commands (the connect); `secured` and
    `authenticator` (default: the app's) as the endpoint's (the connect command
    carries the token)."""
    auth = authenticator or app.auth

    def stream_route(framing: str) -> Handler:
        async def emulated(request: Request, response: ResponseFactory) -> StreamResponse:
            if secured:  # its connect verifies a token: a spent address gets 429 here,
                app.limits.check_address(request)  # before it spends a request token
            check_stream(app, request)
            kind: Framing
            if framing == "sse":
                raw = request.params.get("cf_connect")
                if not raw:
                    raise HTTPError(400, "bad_request", "cf_connect is required")
                data, ep, kind = raw.encode(), endpoint, "sse"
            else:
                data = request.raw_body
                binary = request.headers.get("content-type", "").startswith(PROTOBUF)
                ep = protobuf.get() if binary else endpoint
                kind = "varint" if binary else "ndjson"
            if pre_connect and len(data) > pre_connect:
                raise HTTPError(413, "body_too_large", "the connect request is too large")

            async def start(stream: Stream) -> None:
                session = Session(app.hub, stream, app.settings, principal=request.principal,
                                  authenticator=auth, dialect=ep,
                                  address=request.client, wires=stream.wires)
                stream.close_codes = ep.close_codes
                stream.farewell = ep.codec.disconnect
                session_id = open_session(app, stream, session, pre_connect)
                gate = session.hook
                if isinstance(gate, Gate):  # the Centrifuge dialect's hook: name the stream
                    gate.emulation = (session_id, app.hub.relay.node)
                if data:
                    stream.feed(data)

            content_type = ("text/event-stream; charset=utf-8" if kind == "sse"
                            else PROTOBUF if kind == "varint" else "application/json")
            return StreamResponse(content_type=content_type, headers=list(STREAM_HEADERS),
                                  start=start, framing=kind)

        # The token is in the connect command; "in_band" makes an app without secrets
        # refuse to start, as the WebSocket endpoint does.
        return mark_auth(emulated, "in_band" if secured else "noauth")

    if app.router.match("POST", HTTP_STREAM_PATH) is None:
        app.post(HTTP_STREAM_PATH)(stream_route("ndjson"))
    if app.router.match("GET", SSE_PATH) is None:
        app.get(SSE_PATH)(stream_route("sse"))
    if app.router.match("POST", EMULATION_PATH) is None:
        app.post(EMULATION_PATH)(emulation_handler(app))
    for path, method in ((HTTP_STREAM_PATH, "POST"), (SSE_PATH, "GET"), (EMULATION_PATH, "POST")):
        allow_cross_origin(app, path, [method])  # pages on other allowed origins


def emulation_handler(app: App) -> Handler:
    async def emulation(request: Request, response: ResponseFactory) -> Response:
        """``POST /emulation``: hand one command batch to its session (module docstring)."""
        check_origin(app, request)  # the stream's own rule: a page allowed to open it
        app.limits.charge(request)
        body = request.raw_body
        limit = body_limit(app)
        if limit and len(body) > limit:
            raise HTTPError(413, "body_too_large", "the emulation request is too large")
        node, session_id, data = _emulation_request(
            body, request.headers.get("content-type", "").startswith(PROTOBUF))
        check_routed(await app.hub.relay.route(node, session_id, data), request)
        return response(None, 204)

    return mark_auth(emulation, "noauth")  # the session id is the credential


def check_routed(result: RouteResult, request: Request) -> None:
    """Raise the `HTTPError` for a command the relay could not hand over (one table for
    both emulation dialects): 404 no such session (here, or no node received it), 413
    too large, 503 broker down."""
    if result is RouteResult.LOCAL_FED or result is RouteResult.SENT:
        return
    if result is RouteResult.UNKNOWN_SESSION:
        refusals.warn("unknown_session", request.client)
        raise HTTPError(404, "unknown_session", "no such session")
    if result is RouteResult.TOO_LARGE:
        raise HTTPError(413, "body_too_large", "the command is too large to route")
    raise HTTPError(503, "unavailable", "the session's node cannot be reached now")


def parse_json(raw: bytes | str, kind: type[Any], what: str = "the body",
               shape: str = "a JSON object") -> Any:
    """`raw` parsed as JSON, which must be a `kind` (dict or list), or `HTTPError` 400
    ``bad_json`` ("<what> is not JSON", "<what> must be <shape>")."""
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPError(400, "bad_json", f"{what} is not JSON") from None
    if not isinstance(parsed, kind):
        raise HTTPError(400, "bad_json", f"{what} must be {shape}")
    return parsed


def _emulation_request(body: bytes, binary: bool) -> tuple[str, str, bytes]:
    """(node, session, data) of an ``EmulationRequest``, or `HTTPError` 400."""
    if binary:
        try:
            from google.protobuf.message import DecodeError

            from ..protocols.centrifuge._pb import pubsocket_centrifuge_pb2 as pb
        except ImportError:
            raise HTTPError(400, "protobuf_unavailable", "no Protobuf here") from None
        try:
            req = pb.EmulationRequest.FromString(body)
        except DecodeError:
            raise HTTPError(400, "bad_request", "not a Protobuf EmulationRequest") from None
        return req.node, req.session, req.data
    parsed = parse_json(body, dict)
    node, session_id, data = parsed.get("node"), parsed.get("session"), parsed.get("data")
    if not (isinstance(node, str) and isinstance(session_id, str) and isinstance(data, str)):
        raise HTTPError(400, "bad_field", "node, session and data are strings")
    return node, session_id, data.encode()
