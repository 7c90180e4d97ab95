"""Centrifuge client protocol v2, JSON variant: what centrifuge-js / centrifuge-python speak.

Replies are ``{"id": N, "<method>": {...}}`` or ``{"id": N, "error": {"code", "message",
"temporary"?}}``; pushes are ``{"push": {"channel": T, "pub" | "join" | "leave" |
"unsubscribe": {...}}}``; the server's ping is ``{}``. Deliveries are built by
concatenation around the stored payload (no re-encoding of data), once per publication.
Disconnects are WebSocket close frames with the protocol's codes: `CLOSE_CODES` maps the
transport's own closes to them (set per connection as `Connection.close_codes`).
docs/centrifuge.md is the reference; commands are parsed in `parse`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from ...brokers.base import HistoryPage, Position, Publication, Publisher
from ...codecs.base import Codec, Parsed
from ...errors import CloseCode, ProtocolViolation
from ...presence.base import ClientInfo, Stats
from ...protocol import (
    CmdId,
    Command,
    ErrorCode,
    History,
    Presence,
    Publish,
    Refresh,
    SubRefresh,
    Subscribe,
    SubscribeResult,
    Unsubscribe,
)
from .parse import count_lines, parse_frame

# Centrifuge client error codes (centrifugal.dev "Error and disconnect codes").
INTERNAL: Final = 100
UNAUTHORIZED: Final = 101
UNKNOWN_CHANNEL: Final = 102
PERMISSION_DENIED: Final = 103
METHOD_NOT_FOUND: Final = 104
LIMIT_EXCEEDED: Final = 106
BAD_REQUEST: Final = 107
NOT_AVAILABLE: Final = 108
TOKEN_EXPIRED: Final = 109
TOO_MANY_REQUESTS: Final = 111
UNRECOVERABLE_POSITION: Final = 112
_MESSAGES: Final = {
    INTERNAL: "internal server error", UNAUTHORIZED: "unauthorized",
    UNKNOWN_CHANNEL: "unknown channel", PERMISSION_DENIED: "permission denied",
    METHOD_NOT_FOUND: "method not found", LIMIT_EXCEEDED: "limit exceeded",
    BAD_REQUEST: "bad request", NOT_AVAILABLE: "not available",
    TOKEN_EXPIRED: "token expired", TOO_MANY_REQUESTS: "too many requests",
    UNRECOVERABLE_POSITION: "unrecoverable position",
}
_TEMPORARY: Final = frozenset({INTERNAL, TOO_MANY_REQUESTS})
_ERRORS: Final = {
    ErrorCode.BAD_JSON: BAD_REQUEST, ErrorCode.BAD_ACTION: METHOD_NOT_FOUND,
    ErrorCode.INVALID_TOPIC: UNKNOWN_CHANNEL, ErrorCode.MISSING_DATA: BAD_REQUEST,
    ErrorCode.BAD_ID: BAD_REQUEST, ErrorCode.BAD_FIELD: BAD_REQUEST,
    ErrorCode.SUBSCRIPTION_LIMIT: LIMIT_EXCEEDED,
    ErrorCode.UNRECOVERABLE_POSITION: UNRECOVERABLE_POSITION,
    ErrorCode.FORBIDDEN: PERMISSION_DENIED, ErrorCode.PRESENCE_OFF: NOT_AVAILABLE,
    ErrorCode.INVALID_TOKEN: UNAUTHORIZED, ErrorCode.BROKER_UNAVAILABLE: INTERNAL,
    ErrorCode.PUBLISH_RATE: TOO_MANY_REQUESTS,
    ErrorCode.TOO_MANY_REQUESTS: TOO_MANY_REQUESTS,
}
# Parse errors the protocol answers with a disconnect rather than an error reply.
_FATAL: Final = frozenset({ErrorCode.BAD_JSON, ErrorCode.BAD_ACTION, ErrorCode.BAD_ID,
                           ErrorCode.BAD_FIELD, ErrorCode.MISSING_DATA})

# Centrifuge disconnect codes: 3000-3499 reconnect, 3500-3999 do not.
SHUTDOWN: Final = (3001, "shutdown")
EXPIRED: Final = (3005, "connection expired")
SLOW: Final = (3008, "slow")
NO_PONG: Final = (3012, "no pong")
TOO_MANY: Final = (3013, "too many requests")
INVALID_TOKEN: Final = (3500, "invalid token")
BAD_REQUEST_CLOSE: Final = (3501, "bad request")
STALE: Final = (3502, "stale")
FORCE_NO_RECONNECT: Final = (3503, "force disconnect")
TOO_MANY_ERRORS: Final = (3509, "too many errors")
CLOSE_CODES: Final[Mapping[int, tuple[int, str]]] = {
    CloseCode.GOING_AWAY: SHUTDOWN,
    CloseCode.PROTOCOL_ERROR: BAD_REQUEST_CLOSE,
    CloseCode.UNSUPPORTED_DATA: BAD_REQUEST_CLOSE,
    CloseCode.INVALID_DATA: BAD_REQUEST_CLOSE,
    CloseCode.POLICY_VIOLATION: TOO_MANY_ERRORS,
    CloseCode.MESSAGE_TOO_BIG: BAD_REQUEST_CLOSE,
    # The transport's one routine 1011 is the keepalive timeout; both reconnect.
    CloseCode.INTERNAL_ERROR: NO_PONG,
    CloseCode.AUTH_EXPIRED: EXPIRED,
    CloseCode.DISCONNECTED: FORCE_NO_RECONNECT,
    CloseCode.SLOW_CONSUMER: SLOW,
    CloseCode.RATE_LIMITED: TOO_MANY,
}

# Unsubscribe push codes: below 2500 final, from 2500 the SDK resubscribes.
UNSUBSCRIBE_SERVER: Final = (2000, "server unsubscribe")
UNSUBSCRIBE_INSUFFICIENT: Final = (2500, "insufficient state")
UNSUBSCRIBE_EXPIRED: Final = (2501, "subscription expired")

PING: Final = b"{}"


def ttl_of(expires_at: float | None) -> dict[str, Any]:
    """The ``expires``/``ttl`` fields for a token expiring at `expires_at` (Unix time)."""
    if expires_at is None:
        return {}
    return {"expires": True, "ttl": max(0, math.floor(expires_at - time.time()))}


def _client(client: ClientInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"user": client.user or "", "client": client.client_id}
    if client.info is not None:
        out["conn_info"] = client.info
    return out


@functools.lru_cache(maxsize=4096)  # one entry per publishing connection seen lately
def _info(publisher: Publisher) -> bytes:
    """``,"info":{...}``: the publisher as a ClientInfo, `conn_info` spliced in raw."""
    body: dict[str, Any] = {"user": publisher.user or "", "client": publisher.client}
    if publisher.info:
        body["conn_info"] = orjson.Fragment(publisher.info)
    return b',"info":' + orjson.dumps(body)


def _pub(pub: Publication) -> bytes:
    tail = b"}" if pub.publisher is None else _info(pub.publisher) + b"}"
    if pub.offset:
        return b'{"data":' + pub.payload + b',"offset":' + str(pub.offset).encode() + tail
    return b'{"data":' + pub.payload + tail


def _reply(method: str, cmd_id: CmdId | None, body: Mapping[str, Any]) -> bytes | None:
    if cmd_id is None:
        return None  # a command without id wants no reply
    return orjson.dumps({"id": cmd_id, method: body})


def _push(topic: str, kind: str, body: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"push": {"channel": topic, kind: body}})


class CentrifugeCodec(Codec):
    """The Centrifuge JSON protocol on the shared hub (see the module docstring)."""

    name = "centrifuge"
    refreshable = True  # the SDK refreshes from the ttl; there is no expiry notice

    def count(self, data: str | bytes) -> int:
        assert isinstance(data, str)  # a text codec: the session refused binary frames
        return count_lines(data)

    def parse(self, data: str | bytes) -> Sequence[Parsed]:
        assert isinstance(data, str)
        return parse_frame(data)

    def violation_close(self, exc: ProtocolViolation) -> tuple[int, str] | None:
        """The close a malformed command ends the connection with (None: an error reply)."""
        return BAD_REQUEST_CLOSE if exc.code in _FATAL else None

    @property
    def replay_in_reply(self) -> bool:
        return True

    def publication(self, topic: str, pub: Publication) -> bytes:
        return b'{"push":{"channel":' + orjson.dumps(topic) + b',"pub":' + _pub(pub) + b"}}"

    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        if cmd.id is None:
            return None
        position = result.position
        fields: dict[str, Any] = {}
        if position.epoch:  # the topic keeps history: positioned and recoverable
            fields.update(recoverable=True, positioned=True, epoch=position.epoch,
                          offset=position.offset)
        if cmd.since is not None:
            fields.update(was_recovering=True, recovered=result.recovered)
        fields.update(ttl_of(cmd.expires_at))
        head = orjson.dumps({"id": cmd.id, "subscribe": fields})
        if not result.replay:
            return head
        pubs = b",".join(_pub(p) for p in result.replay)
        sep = b"," if fields else b""
        return head[:-2] + sep + b'"publications":[' + pubs + b"]}}"

    def done(self, cmd: Command) -> bytes | None:
        method = "unsubscribe" if isinstance(cmd, Unsubscribe) else "publish"
        return _reply(method, cmd.id, {})

    def published(self, cmd: Publish, pub: Publication) -> bytes | None:
        return _reply("publish", cmd.id, {})

    def history(self, cmd: History, page: HistoryPage) -> bytes | None:
        if cmd.id is None:
            return None
        pubs = page.publications[::-1] if cmd.reverse else page.publications
        head = orjson.dumps({"id": cmd.id, "history": {
            "epoch": page.position.epoch, "offset": page.position.offset}})
        return head[:-2] + b',"publications":[' + b",".join(_pub(p) for p in pubs) + b"]}}"

    def error(self, code: ErrorCode, message: str, cmd_id: CmdId | None) -> bytes:
        return self.error_code(_ERRORS.get(code, BAD_REQUEST), cmd_id)

    def error_code(self, code: int, cmd_id: CmdId | None) -> bytes:
        """An error reply with one of the protocol's numeric codes and its message."""
        body: dict[str, Any] = {"code": code, "message": _MESSAGES.get(code, "error")}
        if code in _TEMPORARY:
            body["temporary"] = True
        return orjson.dumps({"id": cmd_id, "error": body} if cmd_id is not None
                            else {"error": body})

    def gap(self, topic: str, position: Position) -> bytes | None:
        # The SDK resubscribes from its last position; recovery then fills the hole or
        # answers recovered: false (docs/centrifuge.md "Recovery").
        code, reason = UNSUBSCRIBE_INSUFFICIENT
        return _push(topic, "unsubscribe", {"code": code, "reason": reason})

    def connected(self, cmd_id: CmdId | None, client_id: str, version: str,
                  expires_at: float | None, ping: float) -> bytes | None:
        """The reply to an accepted connect."""
        body: dict[str, Any] = {"client": client_id, "version": version}
        body.update(ttl_of(expires_at))
        if ping > 0:
            body.update(ping=max(1, round(ping)), pong=True)
        return _reply("connect", cmd_id, body)

    def refreshed(self, cmd: Refresh, expires_at: float | None) -> bytes | None:
        return _reply("refresh", cmd.id, ttl_of(expires_at))

    def sub_refreshed(self, cmd: SubRefresh, expires_at: float | None) -> bytes | None:
        """The reply to an accepted subscription token refresh."""
        return _reply("sub_refresh", cmd.id, ttl_of(expires_at))

    def rpc_result(self, cmd_id: CmdId | None, payload: bytes) -> bytes | None:
        """The reply to an rpc: the hook's result (already JSON)."""
        if cmd_id is None:
            return None
        return b'{"id":' + orjson.dumps(cmd_id) + b',"rpc":{"data":' + payload + b"}}"

    def unsubscribed(self, topic: str, reason: str) -> bytes | None:
        code, text = UNSUBSCRIBE_EXPIRED if reason == "expired" else UNSUBSCRIBE_SERVER
        return _push(topic, "unsubscribe", {"code": code, "reason": text})

    def presence(self, cmd: Presence, clients: Mapping[str, ClientInfo]) -> bytes | None:
        return _reply("presence", cmd.id, {"presence": {
            cid: _client(c) for cid, c in clients.items()}})

    def presence_stats(self, cmd: Presence, stats: Stats) -> bytes | None:
        return _reply("presence_stats", cmd.id, {"num_clients": stats.connections,
                                                 "num_users": stats.users})

    def join(self, topic: str, client: ClientInfo) -> bytes | None:
        return _push(topic, "join", {"info": _client(client)})

    def leave(self, topic: str, client: ClientInfo) -> bytes | None:
        return _push(topic, "leave", {"info": _client(client)})


CENTRIFUGE = CentrifugeCodec()
