"""``pubsocket.v1``: envelopes with offsets, acks with positions, recovery, history, gaps.

Deliveries: ``{"type":"message","topic":T,"offset":N,"data":D}`` (`offset` absent on
topics without history). A command with an `id` is answered with ``{"type":"ack","id":I,
...}`` or an error with the same `id`; a subscribe with `since` is always answered.
docs/protocol.md is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..brokers.base import HistoryPage, Position, Publication
from ..presence.base import ClientInfo, Stats
from ..protocol import (
    CmdId,
    Command,
    History,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    SubscribeResult,
)
from .plain import PlainCodec


def _client(client: ClientInfo) -> dict[str, Any]:
    return {"user": client.user, "info": client.info}


def _reply(kind: str, cmd_id: CmdId | None, **fields: Any) -> bytes:
    """``{"type": kind, "id"?: cmd_id, **fields}``: the id, when there is one, comes second."""
    body: dict[str, Any] = {"type": kind}
    if cmd_id is not None:
        body["id"] = cmd_id
    body.update(fields)
    return orjson.dumps(body)


def _ack(cmd_id: CmdId | None, **fields: Any) -> bytes:
    return _reply("ack", cmd_id, **fields)


class V1Codec(PlainCodec):
    """The pubsocket.v1 subprotocol: the plain commands and errors, and more."""

    name = "pubsocket.v1"
    extended = True
    refreshable = True

    def publication(self, topic: str, pub: Publication) -> bytes:
        # Built by concatenation around the already-encoded payload: no re-encoding of data.
        head = b'{"type":"message","topic":' + orjson.dumps(topic)
        if pub.offset:
            head += b',"offset":' + str(pub.offset).encode()
        return head + b',"data":' + pub.payload + b"}"

    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        if cmd.id is None and cmd.since is None:
            return None
        position = result.position
        fields: dict[str, Any] = {"topic": cmd.topic, "offset": position.offset,
                                  "epoch": position.epoch}
        if cmd.since is not None:
            fields["recovered"] = result.recovered
        return _ack(cmd.id, **fields)

    def done(self, cmd: Command) -> bytes | None:
        return None if cmd.id is None else _ack(cmd.id)

    def published(self, cmd: Publish, pub: Publication) -> bytes | None:
        if cmd.id is None:
            return None
        return _ack(cmd.id, offset=pub.offset) if pub.offset else _ack(cmd.id)

    def history(self, cmd: History, page: HistoryPage) -> bytes | None:
        head = _reply("history", cmd.id, topic=cmd.topic, offset=page.position.offset,
                      epoch=page.position.epoch)
        pubs = b",".join(b'{"offset":' + str(p.offset).encode() + b',"data":' + p.payload + b"}"
                         for p in page.publications)
        return head[:-1] + b',"publications":[' + pubs + b"]}"

    def refreshed(self, cmd: Refresh, expires_at: float | None) -> bytes | None:
        return _ack(cmd.id, expires_at=expires_at)

    def expiring(self, expires_at: float) -> bytes | None:
        return orjson.dumps({"type": "expiring", "expires_at": expires_at})

    def unsubscribed(self, topic: str, reason: str) -> bytes | None:
        return orjson.dumps({"type": "unsubscribed", "topic": topic, "reason": reason})

    def presence(self, cmd: Presence, clients: Mapping[str, ClientInfo]) -> bytes | None:
        return _reply("presence", cmd.id, topic=cmd.topic,
                      clients={cid: _client(c) for cid, c in clients.items()})

    def presence_stats(self, cmd: Presence, stats: Stats) -> bytes | None:
        return _reply("presence_stats", cmd.id, topic=cmd.topic,
                      connections=stats.connections, users=stats.users)

    def join(self, topic: str, client: ClientInfo) -> bytes | None:
        return orjson.dumps({"type": "join", "topic": topic, **_client(client),
                             "client": client.client_id})

    def leave(self, topic: str, client: ClientInfo) -> bytes | None:
        return orjson.dumps({"type": "leave", "topic": topic, **_client(client),
                             "client": client.client_id})

    def gap(self, topic: str, position: Position) -> bytes | None:
        return orjson.dumps({"type": "gap", "topic": topic, "offset": position.offset,
                             "epoch": position.epoch})


V1 = V1Codec()
