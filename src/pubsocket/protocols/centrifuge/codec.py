"""Centrifuge client protocol v2, JSON variant: what centrifuge-js / centrifuge-python speak.

Replies are ``{"id": N, "<method>": {...}}`` or ``{"id": N, "error": {"code", "message",
"temporary"?}}``; pushes are ``{"push": {"channel": T, "pub" | "join" | "leave" |
"unsubscribe": {...}}}``; the server's ping is ``{}``. Deliveries are built by
concatenation around the stored payload (no re-encoding of data), once per publication.
Disconnects are WebSocket close frames with the protocol's codes (`codes`).
docs/centrifuge.md is the reference; commands are parsed in `parse`.

Server-side subscriptions (the token's ``subs``, the personal channel, the server API's
subscribe) deliver through `server_side()`, a twin codec with the same bytes but one
difference: a gap it cannot fill is a ``disconnect`` push (3010 "insufficient state",
reconnect) instead of an ``unsubscribe`` push, because an SDK never resubscribes a
server-side subscription itself: it reconnects and recovers it through the connect
command's ``subs`` (centrifuge ``client.go`` ``handleInsufficientState``: a server-side
subscription disconnects, a client-side one is unsubscribed).
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
from ...errors import ProtocolViolation
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
from .codes import (
    INSUFFICIENT_STATE,
    MESSAGES,
    TEMPORARY,
    UNSUBSCRIBE_EXPIRED,
    UNSUBSCRIBE_INSUFFICIENT,
    UNSUBSCRIBE_SERVER,
    error_code,
    violation_close,
)
from .parse import count_lines, parse_frame

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
    if client.chan_info is not None:
        out["chan_info"] = client.chan_info
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
        return b'{"data":%b,"offset":%d%b' % (pub.payload, pub.offset, tail)
    return b'{"data":%b%b' % (pub.payload, tail)


@functools.lru_cache(maxsize=1024)  # one entry per topic published to lately (<= 255 chars)
def _push_head(topic: str) -> bytes:
    """``{"push":{"channel":T,"pub":``: a publication push's start, the same for a topic."""
    return b'{"push":{"channel":' + orjson.dumps(topic) + b',"pub":'


def _reply(method: str, cmd_id: CmdId | None, body: Mapping[str, Any]) -> bytes | None:
    if cmd_id is None:
        return None  # a command without id wants no reply
    return orjson.dumps({"id": cmd_id, method: body})


def _push(topic: str, kind: str, body: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"push": {"channel": topic, kind: body}})


def sub_fields(cmd: Subscribe, result: SubscribeResult) -> dict[str, Any]:
    """A SubscribeResult's fields beside its publications: the position when the topic
    keeps history (positioned and recoverable), the recovery outcome when `cmd` asked
    for one, the subscription token's ttl."""
    position = result.position
    fields: dict[str, Any] = {}
    if position.epoch:  # the topic keeps history: positioned and recoverable
        fields.update(recoverable=True, positioned=True, epoch=position.epoch,
                      offset=position.offset)
    if cmd.since is not None:
        fields.update(was_recovering=True, recovered=result.recovered)
    fields.update(ttl_of(cmd.expires_at))
    return fields


ServerSubs = Mapping[str, tuple[Subscribe, SubscribeResult]]
"""The connect reply's server-side subscriptions: channel -> (the subscribe the server
made for it, its result)."""


class CentrifugeCodec(Codec):
    """The Centrifuge JSON protocol on the shared hub (see the module docstring)."""

    name = "centrifuge"
    refreshable = True  # the SDK refreshes from the ttl; there is no expiry notice
    requires_history = True  # history where none is kept: 108 not available

    def __init__(self, *, server_side: bool = False) -> None:
        """`server_side`: the twin for server-side subscriptions (module docstring)."""
        self.is_server_side = server_side
        self._twin: CentrifugeCodec | None = self if server_side else None

    def server_side(self) -> CentrifugeCodec:
        """This codec for server-side subscriptions (made once, then shared)."""
        if self._twin is None:
            twin = type(self)(server_side=True)
            twin._twin = twin
            self._twin = twin
        return self._twin

    def count(self, data: str | bytes) -> int:
        assert isinstance(data, str)  # a text codec: the session refused binary frames
        return count_lines(data)

    def parse(self, data: str | bytes) -> Sequence[Parsed]:
        assert isinstance(data, str)
        return parse_frame(data)

    def violation_close(self, exc: ProtocolViolation) -> tuple[int, str] | None:
        """The close a malformed command ends the connection with (None: an error reply)."""
        return violation_close(exc)

    @property
    def replay_in_reply(self) -> bool:
        return True

    @property
    def join_leave_per_client(self) -> bool:
        return True  # Centrifugo announces every client, not a user's first/last

    def publication(self, topic: str, pub: Publication) -> bytes:
        return b"%b%b}}" % (_push_head(topic), _pub(pub))

    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        if cmd.id is None and not cmd.server:
            return None
        fields = sub_fields(cmd, result)
        if cmd.server:  # a server-side subscription: the SDK hears a subscribe push,
            # then what it recovered as publication pushes (the push has no room for
            # them), one per line of the same message; the server's data (JSON) is
            # the SDK's ctx.data (centrifuge protocol's Subscribe push ``data``)
            if cmd.options is not None and cmd.options.data is not None:
                fields["data"] = orjson.Fragment(cmd.options.data)
            push = _push(cmd.topic, "subscribe", fields)
            return b"\n".join([push, *(self.publication(cmd.topic, p) for p in result.replay)])
        head = orjson.dumps({"id": cmd.id, "subscribe": fields})
        if not result.replay:
            return head
        pubs = b",".join(_pub(p) for p in result.replay)
        sep = b"," if fields else b""
        return head[:-2] + sep + b'"publications":[' + pubs + b"]}}"

    def result_reply(self, method: str, cmd_id: CmdId | None,
                     body: Mapping[str, Any]) -> bytes | None:
        """A reply to `cmd_id` carrying `body` as its `method` result (None without an
        id). The one place a plain result is encoded: the Protobuf codec overrides it
        and inherits every reply built from it."""
        return _reply(method, cmd_id, body)

    def done(self, cmd: Command) -> bytes | None:
        method = "unsubscribe" if isinstance(cmd, Unsubscribe) else "publish"
        return self.result_reply(method, cmd.id, {})

    def published(self, cmd: Publish, pub: Publication) -> bytes | None:
        return self.result_reply("publish", cmd.id, {})

    def history(self, cmd: History, page: HistoryPage) -> bytes | None:
        if cmd.id is None:
            return None
        pubs = page.publications[::-1] if cmd.reverse else page.publications
        head = orjson.dumps({"id": cmd.id, "history": {
            "epoch": page.position.epoch, "offset": page.position.offset}})
        return head[:-2] + b',"publications":[' + b",".join(_pub(p) for p in pubs) + b"]}}"

    def error(self, code: ErrorCode, message: str, cmd_id: CmdId | None) -> bytes:
        return self.error_code(error_code(code), cmd_id)

    def error_code(self, code: int, cmd_id: CmdId | None) -> bytes:
        """An error reply with one of the protocol's numeric codes and its message."""
        body: dict[str, Any] = {"code": code, "message": MESSAGES.get(code, "error")}
        if code in TEMPORARY:
            body["temporary"] = True
        return orjson.dumps({"id": cmd_id, "error": body} if cmd_id is not None
                            else {"error": body})

    def gap(self, topic: str, position: Position) -> bytes | None:
        if self.is_server_side:
            return self.disconnect(*INSUFFICIENT_STATE)
        # The SDK resubscribes from its last position; recovery then fills the hole or
        # answers recovered: false (docs/centrifuge.md "Recovery").
        code, reason = UNSUBSCRIBE_INSUFFICIENT
        return _push(topic, "unsubscribe", {"code": code, "reason": reason})

    def connected(self, cmd_id: CmdId | None, client_id: str, version: str,
                  expires_at: float | None, ping: float,
                  subs: ServerSubs | None = None, *, session: str = "",
                  node: str = "") -> bytes | None:
        """The reply to an accepted connect; `subs` are its server-side subscriptions,
        each with its recovered publications (oldest first) and its options' `data`
        (JSON, from the token's ``subs`` claim) if any; an emulated connection (HTTP stream, SSE)
        gets its `session` and `node`, which its POSTed commands name."""
        body: dict[str, Any] = {"client": client_id, "version": version}
        body.update(ttl_of(expires_at))
        if ping > 0:
            body.update(ping=max(1, round(ping)), pong=True)
        if subs:
            out = body["subs"] = {}
            for topic, (cmd, result) in subs.items():
                fields = out[topic] = sub_fields(cmd, result)
                if cmd.options is not None and cmd.options.data is not None:
                    fields["data"] = orjson.Fragment(cmd.options.data)  # JSON already
                if result.replay:  # spliced in as stored: no re-encoding of data
                    fields["publications"] = orjson.Fragment(
                        b"[" + b",".join(_pub(p) for p in result.replay) + b"]")
        if session:
            body.update(session=session, node=node)
        return self.result_reply("connect", cmd_id, body)

    def disconnect(self, code: int, reason: str) -> bytes:
        """The disconnect push an emulated stream ends with (a WebSocket closes with the
        code instead), and a server-side subscription's hole (`gap`): the SDK closes,
        and reconnects unless the code is 3500-3999 or 4500-4999."""
        return orjson.dumps({"push": {"disconnect": {
            "code": code, "reason": reason,
            "reconnect": code < 3500 or 4000 <= code < 4500}}})

    def refreshed(self, cmd: Refresh, expires_at: float | None) -> bytes | None:
        return self.result_reply("refresh", cmd.id, ttl_of(expires_at))

    def sub_refreshed(self, cmd: SubRefresh, expires_at: float | None) -> bytes | None:
        """The reply to an accepted subscription token refresh."""
        return self.result_reply("sub_refresh", cmd.id, ttl_of(expires_at))

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
        return self.result_reply("presence_stats", cmd.id, {"num_clients": stats.connections,
                                                 "num_users": stats.users})

    def join(self, topic: str, client: ClientInfo) -> bytes | None:
        return _push(topic, "join", {"info": _client(client)})

    def leave(self, topic: str, client: ClientInfo) -> bytes | None:
        return _push(topic, "leave", {"info": _client(client)})


CENTRIFUGE = CentrifugeCodec()
