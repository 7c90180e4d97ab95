"""Centrifuge client protocol v2, Protobuf variant: centrifuge-js's protobuf build and
centrifuge-python with ``use_protobuf=True``.

Same protocol as `centrifuge.CentrifugeCodec` (the JSON variant), other bytes: every
reply and push is one ``Reply`` message from centrifugal/protocol's ``client.proto``,
prefixed with its length as a varint, in a binary WebSocket message; the server's ping
is the empty ``Reply`` (``b"\\x00"``). The replies, error codes, pushes and close codes
are the JSON codec's: this class inherits its decisions (error mapping, which parse
errors close, unsubscribe codes, what a gap says) and changes only the encoding.
``data`` fields carry the publication's JSON bytes as they are stored, so a JSON client
and a Protobuf client on one channel see the same value; commands are read in
`centrifuge_protobuf_parse` (data that is not JSON is refused there).

Needs the ``protobuf`` package (the ``centrifuge-protobuf`` extra); nothing else imports
this module, so the JSON path never loads it (`web.pubsub` imports it on the first
Protobuf client).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from ...brokers.base import HistoryPage, Position, Publication
from ...codecs.base import Parsed
from ...errors import ProtocolViolation
from ...presence.base import ClientInfo
from ...protocol import (
    CmdId,
    History,
    Presence,
    Subscribe,
    SubscribeResult,
)
from ._pb import pubsocket_centrifuge_pb2 as pb
from .codec import CentrifugeCodec, ServerSubs, sub_fields, ttl_of
from .codes import (
    INSUFFICIENT_STATE,
    MESSAGES,
    TEMPORARY,
    UNSUBSCRIBE_EXPIRED,
    UNSUBSCRIBE_INSUFFICIENT,
    UNSUBSCRIBE_SERVER,
)
from .protobuf_parse import DataNotJSON, count_commands, parse_commands, varint

SUBPROTOCOL: Final = "centrifuge-protobuf"
PING: Final = b"\x00"  # an empty Reply, length-prefixed


def _frame(reply: Any) -> bytes:
    body: bytes = reply.SerializeToString()
    return varint(len(body)) + body


def _client(client: ClientInfo) -> Any:
    info = pb.ClientInfo(user=client.user or "", client=client.client_id)
    if client.info is not None:
        info.conn_info = orjson.dumps(client.info)
    if client.chan_info is not None:
        info.chan_info = orjson.dumps(client.chan_info)
    return info


def _pub(pub: Publication) -> Any:
    out = pb.Publication(data=pub.payload, offset=pub.offset)
    publisher = pub.publisher
    if publisher is not None:
        out.info.user = publisher.user or ""
        out.info.client = publisher.client
        if publisher.info:
            out.info.conn_info = publisher.info
    return out


def _reply(method: str, cmd_id: CmdId | None, body: Mapping[str, Any]) -> bytes | None:
    """A reply to `cmd_id` whose `method` result has the fields of `body` (the JSON
    codec's field names, which are the .proto's)."""
    if cmd_id is None:
        return None
    reply = pb.Reply(id=int(cmd_id))
    getattr(reply, method).SetInParent()  # an empty result is still the method's reply
    for key, value in body.items():
        setattr(getattr(reply, method), key, value)
    return _frame(reply)


def _push(topic: str, **kind: Any) -> bytes:
    return _frame(pb.Reply(push=pb.Push(channel=topic, **kind)))


_PUSH_FIELDS: Final = frozenset({"recoverable", "positioned", "epoch", "offset"})


def _result(cmd: Subscribe, result: SubscribeResult) -> Any:
    """The SubscribeResult of `cmd` (the JSON codec's fields) with its replay."""
    return pb.SubscribeResult(publications=[_pub(p) for p in result.replay],
                              **sub_fields(cmd, result))


class CentrifugeProtobufCodec(CentrifugeCodec):
    """The Centrifuge Protobuf protocol on the shared hub (see the module docstring)."""

    name = "centrifuge-protobuf"
    binary = True

    def count(self, data: str | bytes) -> int:
        """The length-prefixed commands in a binary message (`count_commands`)."""
        return count_commands(data) if isinstance(data, bytes) else 1

    def parse(self, data: str | bytes) -> Sequence[Parsed]:
        """The commands of a binary message (the session never hands it text)."""
        if not isinstance(data, bytes):
            raise TypeError("the Centrifuge Protobuf codec reads binary messages only")
        return parse_commands(data)

    def violation_close(self, exc: ProtocolViolation) -> tuple[int, str] | None:
        if isinstance(exc, DataNotJSON):
            return None  # an error reply to that command; the connection stays
        return super().violation_close(exc)

    def publication(self, topic: str, pub: Publication) -> bytes:
        return _frame(pb.Reply(push=pb.Push(channel=topic, pub=_pub(pub))))

    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        if cmd.server:  # a server-side subscription: the SDK hears a subscribe push
            fields = sub_fields(cmd, result)
            body = pb.Subscribe(**{k: v for k, v in fields.items() if k in _PUSH_FIELDS})
            if cmd.options is not None and cmd.options.data is not None:
                body.data = cmd.options.data
            push = _push(cmd.topic, subscribe=body)
            # what it recovered follows as publication pushes (as the JSON codec)
            return b"".join([push, *(self.publication(cmd.topic, p) for p in result.replay)])
        if cmd.id is None:
            return None
        return _frame(pb.Reply(id=int(cmd.id), subscribe=_result(cmd, result)))

    def connected(self, cmd_id: CmdId | None, client_id: str, version: str,
                  expires_at: float | None, ping: float,
                  subs: ServerSubs | None = None, *, session: str = "",
                  node: str = "") -> bytes | None:
        if cmd_id is None:
            return None
        res = pb.ConnectResult(client=client_id, version=version, **ttl_of(expires_at))
        if ping > 0:
            res.ping, res.pong = max(1, round(ping)), True
        if session:
            res.session, res.node = session, node
        for topic, (cmd, result) in (subs or {}).items():
            res.subs[topic].CopyFrom(_result(cmd, result))
            if cmd.options is not None and cmd.options.data is not None:
                res.subs[topic].data = cmd.options.data
        return _frame(pb.Reply(id=int(cmd_id), connect=res))

    def disconnect(self, code: int, reason: str) -> bytes:
        return _frame(pb.Reply(push=pb.Push(disconnect=pb.Disconnect(
            code=code, reason=reason, reconnect=code < 3500 or 4000 <= code < 4500))))

    def result_reply(self, method: str, cmd_id: CmdId | None,
                     body: Mapping[str, Any]) -> bytes | None:
        # The JSON codec's replies (connect, refresh, publish, ...) come through here:
        # the same fields, as the .proto's Reply.
        return _reply(method, cmd_id, body)

    def history(self, cmd: History, page: HistoryPage) -> bytes | None:
        if cmd.id is None:
            return None
        pubs = page.publications[::-1] if cmd.reverse else page.publications
        return _frame(pb.Reply(id=int(cmd.id), history=pb.HistoryResult(
            epoch=page.position.epoch, offset=page.position.offset,
            publications=[_pub(p) for p in pubs])))

    def error_code(self, code: int, cmd_id: CmdId | None) -> bytes:
        err = pb.Error(code=code, message=MESSAGES.get(code, "error"),
                       temporary=code in TEMPORARY)
        return _frame(pb.Reply(id=int(cmd_id or 0), error=err))

    def gap(self, topic: str, position: Position) -> bytes | None:
        if self.is_server_side:
            return self.disconnect(*INSUFFICIENT_STATE)
        code, reason = UNSUBSCRIBE_INSUFFICIENT  # as the JSON codec: the SDK resubscribes
        return _push(topic, unsubscribe=pb.Unsubscribe(code=code, reason=reason))

    def rpc_result(self, cmd_id: CmdId | None, payload: bytes) -> bytes | None:
        return _reply("rpc", cmd_id, {"data": payload})

    def unsubscribed(self, topic: str, reason: str) -> bytes | None:
        code, text = UNSUBSCRIBE_EXPIRED if reason == "expired" else UNSUBSCRIBE_SERVER
        return _push(topic, unsubscribe=pb.Unsubscribe(code=code, reason=text))

    def presence(self, cmd: Presence, clients: Mapping[str, ClientInfo]) -> bytes | None:
        if cmd.id is None:
            return None
        return _frame(pb.Reply(id=int(cmd.id), presence=pb.PresenceResult(presence={
            cid: _client(c) for cid, c in clients.items()})))

    def join(self, topic: str, client: ClientInfo) -> bytes | None:
        return _push(topic, join=pb.Join(info=_client(client)))

    def leave(self, topic: str, client: ClientInfo) -> bytes | None:
        return _push(topic, leave=pb.Leave(info=_client(client)))


CENTRIFUGE_PROTOBUF = CentrifugeProtobufCodec()
