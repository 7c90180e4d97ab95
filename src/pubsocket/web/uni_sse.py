"""Unidirectional SSE at ``/connection/uni_sse``, as Centrifugo serves it, resumable.

``GET /connection/uni_sse?cf_connect=<JSON>``: the connect request is
``{"token": JWT?, "subs": {channel: {} | {"recover": true, "offset": N, "epoch": E}}}``
(an empty entry: from now). The token is checked before anything is streamed (401, like
an upgrade with a bad token; an address failing too often gets 429), the request is
charged to the HTTP rate limit, the JSON is at most `uni_sse_connect_size` characters
with at most `max_subscriptions` channels (400). Then a 200 ``text/event-stream`` whose
events are Centrifuge pushes (protocols/centrifuge/uni_sse.py): the connect push, one subscribe push
per channel (with ``recovered`` when it resumed), publications, ``{}`` pings, and a
disconnect push before the server ends the stream.

Beyond Centrifugo: every event that moves a position carries an ``id`` naming every
channel's position (server/sse.py), so a browser `EventSource` that reconnects by itself
sends ``Last-Event-ID`` and resumes each channel through the hub's recovery: nothing
missed and nothing twice, or ``recovered: false`` in that channel's subscribe push when
history can no longer serve it. ``lastEventId`` in the query does the same for clients
that cannot set the header. The id's first field is a checksum of the channel list: an
id from another channel list is not applied (every channel is told ``recovered:
false``).

A page on another origin may read the stream when the upgrade's Origin rule allows it
(``PUBSOCKET_ALLOWED_ORIGINS``; CORS, web/cors.py); any other ``Origin`` is refused
(403 ``origin_not_allowed``) before anything is streamed.

The session is the hub's Centrifuge session (hub/session.py,
protocols/centrifuge/connect.py): the same connect gate, topic permissions, subscription
cap, recovery limits, token expiry and pings as a WebSocket client; only its codec and
framer differ.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from ..auth import Authenticator
from ..brokers.base import Position
from ..errors import HTTPError, Unauthorized
from ..hub import Session, handlers
from ..protocol import Connect, Subscribe, valid_topic
from ..protocols.centrifuge import Endpoint, Gate
from ..protocols.centrifuge import connect as gate
from ..protocols.centrifuge.uni_sse import UNI_SSE
from .app import App
from .cors import allow_cross_origin
from .decorators import current_app
from .emulation import check_origin, parse_json
from .request import Request
from .response import ResponseFactory
from .routing import Handler, mark_auth
from .streaming import Stream, StreamResponse

UNI_SSE_PATH = "/connection/uni_sse"
_SLOT = re.compile(rb"(?:(\d{1,16}):([A-Za-z0-9_-]{1,64}))?")
_UNKNOWN = Position(0, "!")  # never an epoch: recovery from it answers recovered: false
HEADERS = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}


def uni_sse(path: str = UNI_SSE_PATH, *, app: App | None = None,
            secured: bool = False, authenticator: Authenticator | None = None) -> Handler:
    """Mount the unidirectional SSE endpoint at `path` (module docstring). `secured`: a
    connect request without a valid token is refused (401). `authenticator` verifies
    the tokens (default: the app's)."""
    target = app or current_app()
    auth = authenticator or target.auth
    endpoint = Endpoint(target.settings.centrifuge_ping, secured=False, codec=UNI_SSE)

    async def uni_sse_endpoint(request: Request, response: ResponseFactory) -> StreamResponse:
        settings = target.settings
        check_origin(target, request)  # a page on an origin not allowed: 403, no stream
        target.limits.before_auth(request)  # an address flooding bad tokens: 429
        token, subs = _connect_request(request, settings.uni_sse_connect_size,
                                       settings.max_subscriptions)
        if token or secured:
            try:
                if not token:
                    raise Unauthorized("a token is required")
                request.principal = auth.principal_of(token)
            except Unauthorized as exc:
                target.limits.auth_failed(request, exc)  # not an expired one
                raise
        principal = request.principal
        target.limits.charge(request)  # one request token (the user's, else the address)
        topics = list(subs)
        prefix = b"%08x" % zlib.crc32("\n".join(topics).encode())
        since = _resume(request, prefix, len(topics))
        positions = since if since is not None else list(subs.values())

        async def start(stream: Stream) -> None:
            session = Session(target.hub, stream, settings, principal=principal,
                              authenticator=auth, dialect=endpoint,
                              address=request.client, wires=stream.wires)
            stream.attach(session)
            stream.track(topics, prefix, [_slot(p) for p in positions])
            assert isinstance(session.hook, Gate)
            # the connect push, pings, expiry (server-side channels: not on this stream)
            gate.connect(session.hook, session, Connect(), server_subs=False)
            for number, (topic, position) in enumerate(zip(topics, positions, strict=True), 1):
                if session.closed:
                    return
                pending = handlers.run(session, Subscribe(topic, id=number, since=position))
                if pending is not None:
                    await pending

        return StreamResponse(content_type="text/event-stream; charset=utf-8",
                              headers=list(HEADERS.items()), start=start)

    if secured:  # the token is in cf_connect; an app without secrets refuses to start
        mark_auth(uni_sse_endpoint, "in_band")
    target.get(path)(uni_sse_endpoint)
    allow_cross_origin(target, path, ["GET"])  # an EventSource on another allowed origin
    return uni_sse_endpoint


def _connect_request(request: Request, size: int, cap: int
                     ) -> tuple[str, dict[str, Position | None]]:
    """(token, channel -> the position to resume after or None) from ``cf_connect``."""
    raw = request.params.get("cf_connect", "{}")
    if size and len(raw) > size:
        raise HTTPError(400, "connect_too_large",
                        f"cf_connect must be at most {size} characters")
    body = parse_json(raw, dict, "cf_connect")
    token, subs = body.get("token", ""), body.get("subs", {})
    if not isinstance(token, str) or not isinstance(subs, dict):
        raise HTTPError(400, "bad_field", "cf_connect: token is a string, subs an object")
    if cap and len(subs) > cap:
        raise HTTPError(400, "subscription_limit", f"at most {cap} channels")
    out: dict[str, Position | None] = {}
    for topic, sub in subs.items():
        if not valid_topic(topic) or not isinstance(sub, dict):
            raise HTTPError(400, "invalid_topic", "subs: a valid channel -> an object")
        out[topic] = _position(sub)
    return token, out


def _position(sub: dict[str, Any]) -> Position | None:
    if not sub.get("recover"):
        return None
    offset, epoch = sub.get("offset", 0), sub.get("epoch", "")
    if isinstance(offset, str) and offset.isascii() and offset.isdigit():
        offset = int(offset)  # protobuf JSON writes uint64 as a string
    if (isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**63
            or not isinstance(epoch, str)):
        raise HTTPError(400, "bad_field", "subs: offset is an integer, epoch a string")
    return Position(offset, epoch)


def _resume(request: Request, prefix: bytes, count: int) -> list[Position | None] | None:
    """The positions a ``Last-Event-ID`` (or ``lastEventId``) names; None without one.
    An id for another channel list, or malformed, names no usable position: each
    channel resumes from `_UNKNOWN` and is told ``recovered: false``."""
    raw = request.headers.get("last-event-id") or request.params.get("lastEventId")
    if raw is None:
        return None
    fields = raw.encode("latin-1", "replace").split(b";")
    matches = [_SLOT.fullmatch(f) for f in fields[1:]]
    if fields[0] != prefix or len(matches) != count or None in matches:
        return [_UNKNOWN] * count
    return [Position(int(m[1]), m[2].decode()) if m is not None and m[1] else None
            for m in matches]


def _slot(position: Position | None) -> bytes:
    if position is None or not position.epoch or position is _UNKNOWN:
        return b""
    return f"{position.offset}:{position.epoch}".encode()
